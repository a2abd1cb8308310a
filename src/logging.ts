// pino JSON logs. Prompt, response, context and reference text are never logged: callers bind ids
// (evaluation, event, request, trace), not content, and those four field names are redacted
// wherever they appear. `logContent` (EVALBOX_LOG_CONTENT=on) lifts the redaction for debugging.
import { pino, type Logger } from 'pino';

export type { Logger };

/** Field names whose values are content (what a user sent or a model answered). */
const CONTENT_FIELDS = ['prompt', 'response', 'context', 'reference'];

/** Keys under which callers log errors; each goes through loggableError. */
const ERROR_KEYS = ['err', 'error', 'deadLetterError'];

export function createLogger(options: { level?: string; name?: string; logContent?: boolean } = {}): Logger {
  const logContent = options.logContent ?? false;
  const serializeError = (value: unknown) => loggableError(value, logContent);
  return pino(
    {
      name: options.name ?? 'evalbox',
      level: options.level ?? process.env.EVALBOX_LOG_LEVEL ?? 'info',
      serializers: Object.fromEntries(ERROR_KEYS.map((key) => [key, serializeError])),
      ...(logContent ? {} : { redact: { paths: [...CONTENT_FIELDS, ...CONTENT_FIELDS.map((f) => `*.${f}`)], censor: '[redacted]' } }),
    },
    // Logs go to stderr so that CLI output on stdout stays machine-readable.
    pino.destination(2),
  );
}

/** A logger that writes nothing, for tests that do not assert on logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * The parts of an error worth logging, its causes included. A Postgres error's `detail` (and
 * `where`) can quote the failing row, prompt and response text included, so they are left out
 * unless content logging is on; the SQLSTATE, constraint, table and column say enough.
 * Anything that is not an Error is returned as it is.
 */
export function loggableError(error: unknown, logContent = false): unknown {
  if (!(error instanceof Error)) return error;
  const chain: Record<string, unknown>[] = [];
  let current: unknown = error;
  for (let depth = 0; current instanceof Error && depth < 5; depth++) {
    const e = current as Error & { code?: unknown; constraint?: unknown; table?: unknown; column?: unknown; detail?: unknown; where?: unknown };
    chain.push({
      type: e.name,
      message: e.message,
      code: e.code,
      constraint: e.constraint,
      table: e.table,
      column: e.column,
      ...(logContent ? { detail: e.detail, where: e.where } : {}),
      stack: depth === 0 ? e.stack : undefined,
    });
    current = e.cause;
  }
  return { ...chain[0], causes: chain.slice(1) };
}
