// Error mapping: everything a handler can throw becomes an RFC 9457 problem, decided here and
// nowhere else. Logs what is not the client's fault, with ids and codes, never content.
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { classifyPgError, ValidationError, type ErrorCode } from '../errors.js';
import type { Logger } from '../logging.js';
import { MAX_FIELD_ERRORS } from '../schemas/validator.js';
import { ClientAbortedError } from './node-request.js';
import { PROBLEM_CONTENT_TYPE, ProblemError } from './problem.js';

export const databaseUnavailable = () => new ProblemError(503, 'the database is unavailable; retry later', { headers: { 'retry-after': '1' } });

/** The problem type of a request refused because another request holds its idempotency key. */
export const IDEMPOTENCY_KEY_IN_USE = 'https://evalbox.dev/problems/idempotency-key-in-use';

/**
 * The HTTP status and problem type for an error code, whatever part of evalbox raised it (the
 * table in src/errors.ts, or a code taken from Postgres or librdkafka). A retryable code is a
 * dependency that is down (503, retry) unless it names the client's own concurrency; a permanent
 * one is a fault on our side (500) unless it names the input.
 */
export function problemForCode(code: ErrorCode, retryable: boolean): { status: number; type: string } {
  // Two requests with one idempotency key at once: the client's own concurrency, not an outage.
  if (code === 'IDEMPOTENCY_CONFLICT') return { status: 409, type: IDEMPOTENCY_KEY_IN_USE };
  if (retryable) return { status: 503, type: 'about:blank' };
  if (code === 'VALIDATION_FAILED') return { status: 400, type: 'about:blank' };
  if (code === 'EVENT_TOO_LARGE') return { status: 413, type: 'about:blank' };
  // A value the database refuses (class 22 data exception, 54001 nesting too deep) is bad input
  // that slipped past validation: still the client's error, never a 5xx.
  if (/^PG_22/.test(code) || code === 'PG_54001') return { status: 400, type: 'about:blank' };
  return { status: 500, type: 'about:blank' };
}

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
  const classified = classifyPgError(error);
  const { status, type } = problemForCode(classified.code, classified.retryable);
  switch (status) {
    case 503:
      logger.warn({ err: classified, route }, 'database unavailable');
      return databaseUnavailable();
    case 409:
      return new ProblemError(409, classified.message, { type, headers: { 'retry-after': '1' } });
    case 413:
      return new ProblemError(413, classified.message, { type });
    case 400:
      if (classified.code.startsWith('PG_')) {
        logger.warn({ err: error, route }, 'the database refused a value that passed validation');
        return new ProblemError(400, 'the request holds a value that cannot be stored', {
          errors: [{ pointer: '/', detail: `refused by the database (SQLSTATE ${classified.code.slice(3)})` }],
        });
      }
      return new ProblemError(400, classified.message, { type });
    default:
      logger.error({ err: error, route }, 'request failed');
      return new ProblemError(500, 'internal error');
  }
}

export function problemResponse(c: Context, error: ProblemError): Response {
  const requestId = c.get('requestId') as string | undefined;
  const body = { ...error.problem, instance: c.req.path, ...(requestId ? { requestId } : {}) };
  return new Response(JSON.stringify(body), {
    status: error.problem.status,
    headers: { 'content-type': PROBLEM_CONTENT_TYPE, ...error.headers },
  });
}
