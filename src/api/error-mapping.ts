// Error mapping: everything a handler can throw becomes an RFC 9457 problem, decided here and
// nowhere else. Logs what is not the client's fault, with ids and codes, never content.
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { classifyPgError, EvalboxError, ValidationError } from '../errors.js';
import type { Logger } from '../logging.js';
import { MAX_FIELD_ERRORS } from '../schemas/validator.js';
import { ClientAbortedError } from './node-request.js';
import { PROBLEM_CONTENT_TYPE, ProblemError } from './problem.js';

export const databaseUnavailable = () => new ProblemError(503, 'the database is unavailable; retry later', { headers: { 'retry-after': '1' } });

/** Maps anything thrown to a problem; logs what is not the client's fault (ids, never content). */
export function toProblem(error: unknown, route: string, logger: Logger): ProblemError {
  if (error instanceof HTTPException) return ProblemError.from(error);
  if (error instanceof ValidationError) {
    const errors = error.errors.slice(0, MAX_FIELD_ERRORS);
    return new ProblemError(400, error.message, { errors, errorsTruncated: error.truncated || errors.length < error.errors.length });
  }
  // Nobody reads this answer; 499 (as nginx counts it) keeps it out of the 5xx rate and alerts.
  if (error instanceof ClientAbortedError) {
    logger.debug({ route }, 'client closed the connection mid-request');
    return new ProblemError(499, error.message);
  }
  if (error instanceof EvalboxError && error.code === 'EVENT_TOO_LARGE') return new ProblemError(413, error.message);
  const classified = classifyPgError(error);
  if (classified.retryable) {
    logger.warn({ err: classified, route }, 'database unavailable');
    return databaseUnavailable();
  }
  const sqlstate = sqlstateOf(error);
  // A value the database refuses (class 22 data exception, 54001 nesting too deep) is bad
  // input that slipped past validation: still the client's error, never a 5xx.
  if (sqlstate && (sqlstate.startsWith('22') || sqlstate === '54001')) {
    logger.warn({ err: error, route }, 'the database refused a value that passed validation');
    return new ProblemError(400, 'the request holds a value that cannot be stored', {
      errors: [{ pointer: '/', detail: `refused by the database (SQLSTATE ${sqlstate})` }],
    });
  }
  logger.error({ err: error, route }, 'request failed');
  return new ProblemError(500, 'internal error');
}

function sqlstateOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

export function problemResponse(c: Context, error: ProblemError): Response {
  const requestId = c.get('requestId') as string | undefined;
  const body = { ...error.problem, instance: c.req.path, ...(requestId ? { requestId } : {}) };
  return new Response(JSON.stringify(body), {
    status: error.problem.status,
    headers: { 'content-type': PROBLEM_CONTENT_TYPE, ...error.headers },
  });
}
