// One error hierarchy for every process: an error is either retryable (the same work may
// succeed later) or permanent (retrying cannot help). Decisions are made from codes
// (SQLSTATE, librdkafka codes, HTTP status), never from message text.

export interface EvalboxErrorOptions {
  code: string;
  cause?: unknown;
}

export abstract class EvalboxError extends Error {
  abstract readonly retryable: boolean;
  readonly code: string;

  constructor(message: string, options: EvalboxErrorOptions) {
    super(message, { cause: options.cause });
    this.code = options.code;
    this.name = new.target.name;
  }
}

/** The same work may succeed later: a database or broker that is down, a timeout, a 429/5xx. */
export class RetryableError extends EvalboxError {
  readonly retryable = true;
  /** A server-given hint (Retry-After) for when to try again. */
  readonly retryAfterMs: number | undefined;

  constructor(message: string, options: EvalboxErrorOptions & { retryAfterMs?: number }) {
    super(message, options);
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** Retrying cannot help: invalid input, an unknown entity, a 4xx, a message too large. */
export class PermanentError extends EvalboxError {
  readonly retryable = false;
}

/** Bad configuration or command-line usage. */
export class ConfigError extends PermanentError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 'CONFIG_INVALID', cause });
  }
}

export interface FieldError {
  /** JSON pointer of the failing field, e.g. `/prompt`. */
  pointer: string;
  detail: string;
}

/** Input that fails its schema; `errors` names each failing field. */
export class ValidationError extends PermanentError {
  readonly errors: FieldError[];
  /** True when more errors were found (or could exist) than `errors` reports. */
  readonly truncated: boolean;

  constructor(message: string, errors: FieldError[], options: { truncated?: boolean } = {}) {
    super(message, { code: 'VALIDATION_FAILED' });
    this.errors = errors;
    this.truncated = options.truncated ?? false;
  }
}

/** Turns anything thrown into an Error, so `cause` chains and logs always have a stack. */
export function coerceError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(typeof thrown === 'string' ? thrown : JSON.stringify(thrown));
}

/** Walks the cause chain: the first EvalboxError decides; unknown errors are not retryable. */
export function isRetryable(thrown: unknown): boolean {
  let current: unknown = thrown;
  for (let depth = 0; current instanceof Error && depth < 10; depth++) {
    if (current instanceof EvalboxError) return current.retryable;
    current = current.cause;
  }
  return false;
}

// SQLSTATE classes and codes that describe a passing condition of the server or the connection.
const RETRYABLE_SQLSTATE_CLASSES = new Set(['08', '53', '57', '58']);
const RETRYABLE_SQLSTATES = new Set(['40001', '40P01', '55P03']);
const RETRYABLE_SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENOTFOUND']);

function errorCodeOf(thrown: unknown): string | undefined {
  if (thrown && typeof thrown === 'object' && 'code' in thrown) {
    const { code } = thrown;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/** Classifies a node-postgres error by SQLSTATE (or socket code). */
export function classifyPgError(thrown: unknown): EvalboxError {
  if (thrown instanceof EvalboxError) return thrown;
  const error = coerceError(thrown);
  const code = errorCodeOf(thrown);
  if (code && (RETRYABLE_SOCKET_CODES.has(code) || RETRYABLE_SQLSTATES.has(code) || RETRYABLE_SQLSTATE_CLASSES.has(code.slice(0, 2)))) {
    return new RetryableError(`database unavailable: ${error.message}`, { code: `PG_${code}`, cause: error });
  }
  // node-postgres reports a dropped connection without a code.
  if (!code && /Connection terminated|timeout exceeded when trying to connect/i.test(error.message)) {
    return new RetryableError(`database unavailable: ${error.message}`, { code: 'PG_CONNECTION', cause: error });
  }
  return new PermanentError(error.message, { code: code ? `PG_${code}` : 'PG_ERROR', cause: error });
}
