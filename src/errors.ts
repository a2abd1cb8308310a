// One error hierarchy for every process: an error is either retryable (the same work may
// succeed later) or permanent (retrying cannot help). Decisions are made from codes
// (SQLSTATE, librdkafka codes, HTTP status), never from message text.

/** Why a retry was made: the `class` label of judge:retry events and evalbox_judge_retries_total. */
export type ErrorRetryClass =
  'rate_limited' | 'server_error' | 'timeout' | 'connection_error' | 'bad_response' | 'aborted' | 'circuit_open' | 'throttled' | 'queue_timeout' | 'claim_busy';

/** How the judge's breaker, limiter and metrics count an HTTP call that ended with a code. */
interface JudgeCallReport {
  /** The `outcome` label of evalbox_judge_requests_total. */
  outcome:
    | Extract<ErrorRetryClass, 'rate_limited' | 'server_error' | 'timeout' | 'connection_error' | 'bad_response' | 'aborted'>
    | 'client_error'
    | 'response_format_rejected';
  /** For the circuit breaker: a failure of the provider, a sign of its health, or neither. */
  health: 'success' | 'failure' | 'ignore';
  /** For the adaptive limiter: a rate limit shrinks the window, anything else leaves it. */
  permit: 'rate_limited' | 'ignore';
}

interface ErrorCodeSpec {
  /** The same work may succeed later (RetryableError) or not (PermanentError). */
  retryable: boolean;
  /**
   * The judge provider is pushing back (rate limit, hold, open circuit, busy claim): consumption
   * slows or pauses and the evaluation's retry budget is not spent (guarantee 6).
   */
  providerPressure?: true;
  retryClass?: ErrorRetryClass;
  /** Set for the codes a judge HTTP call can end with. */
  judgeCall?: JudgeCallReport;
}

/**
 * Every fixed error code, what it means for retrying, and (for the judge) for pressure, retry
 * metrics, the breaker and the limiter. Codes are also stored (scores.error_code, outbox_parked,
 * DLT headers), so a code is never renamed. Postgres and librdkafka codes are added to it by
 * pattern (DynamicErrorCode).
 */
export const ERROR_CODES = {
  // configuration and input
  CONFIG_INVALID: { retryable: false },
  VALIDATION_FAILED: { retryable: false },
  EVENT_TOO_LARGE: { retryable: false },
  INVALID_TOPIC: { retryable: false },
  // the ingest API: two requests with one idempotency key at once
  IDEMPOTENCY_CONFLICT: { retryable: true },
  // scoring consumers
  INVALID_EVENT: { retryable: false },
  UNKNOWN_EVALUATION: { retryable: false },
  NO_SCORER: { retryable: false },
  // a dimension a live replica offers and this one cannot score: left for that replica
  SCORER_ELSEWHERE: { retryable: true },
  SCORER_ERROR: { retryable: false },
  SCORER_FAILED: { retryable: false },
  HANDLER_FAILED: { retryable: false },
  MISSING_INPUT: { retryable: false },
  SHUTDOWN: { retryable: true },
  // the judge: HTTP outcomes
  JUDGE_RATE_LIMITED: {
    retryable: true,
    providerPressure: true,
    retryClass: 'rate_limited',
    judgeCall: { outcome: 'rate_limited', health: 'ignore', permit: 'rate_limited' },
  },
  JUDGE_SERVER_ERROR: { retryable: true, retryClass: 'server_error', judgeCall: { outcome: 'server_error', health: 'failure', permit: 'ignore' } },
  JUDGE_TIMEOUT: { retryable: true, retryClass: 'timeout', judgeCall: { outcome: 'timeout', health: 'failure', permit: 'ignore' } },
  JUDGE_CONNECTION: { retryable: true, retryClass: 'connection_error', judgeCall: { outcome: 'connection_error', health: 'failure', permit: 'ignore' } },
  JUDGE_BAD_RESPONSE: { retryable: true, retryClass: 'bad_response', judgeCall: { outcome: 'bad_response', health: 'failure', permit: 'ignore' } },
  JUDGE_ABORTED: { retryable: true, retryClass: 'aborted', judgeCall: { outcome: 'aborted', health: 'ignore', permit: 'ignore' } },
  // A 4xx says the provider is up and answering: healthy, whatever is wrong with our request.
  JUDGE_CLIENT_ERROR: { retryable: false, judgeCall: { outcome: 'client_error', health: 'success', permit: 'ignore' } },
  JUDGE_CONTEXT_TOO_LONG: { retryable: false, judgeCall: { outcome: 'client_error', health: 'success', permit: 'ignore' } },
  JUDGE_AUTH: { retryable: false, judgeCall: { outcome: 'client_error', health: 'success', permit: 'ignore' } },
  JUDGE_RESPONSE_FORMAT_REJECTED: { retryable: false, judgeCall: { outcome: 'response_format_rejected', health: 'success', permit: 'ignore' } },
  // the judge: verdicts that are an ERROR score (never retried, never fabricated)
  JUDGE_UNPARSEABLE: { retryable: false },
  JUDGE_REFUSED: { retryable: false },
  // the judge: admission and the shared cache
  JUDGE_THROTTLED: { retryable: true, providerPressure: true, retryClass: 'throttled' },
  JUDGE_CIRCUIT_OPEN: { retryable: true, providerPressure: true, retryClass: 'circuit_open' },
  JUDGE_QUEUE_TIMEOUT: { retryable: true, providerPressure: true, retryClass: 'queue_timeout' },
  JUDGE_CLAIM_BUSY: { retryable: true, providerPressure: true, retryClass: 'claim_busy' },
  JUDGE_UNKNOWN_DIMENSION: { retryable: false },
  JUDGE_UNKNOWN_ENDPOINT: { retryable: false },
  // Postgres, when no SQLSTATE says more (see classifyPgError)
  PG_CONNECTION: { retryable: true },
  PG_ERROR: { retryable: false },
  // librdkafka, when the error has no code
  KAFKA_UNKNOWN: { retryable: true },
} as const satisfies Record<string, ErrorCodeSpec>;

type FixedErrorCode = keyof typeof ERROR_CODES;
type CodesWhereRetryable<R extends boolean> = { [K in FixedErrorCode]: (typeof ERROR_CODES)[K]['retryable'] extends R ? K : never }[FixedErrorCode];

/** Codes taken from the failing component: `PG_<SQLSTATE>`, librdkafka's `ERR_<name>` or `KAFKA_<number>`. */
export type DynamicErrorCode = `PG_${string}` | `ERR_${string}` | `KAFKA_${string}`;
export type ErrorCode = FixedErrorCode | DynamicErrorCode;
export type RetryableCode = CodesWhereRetryable<true> | DynamicErrorCode;
export type PermanentCode = CodesWhereRetryable<false> | DynamicErrorCode;

const DYNAMIC_CODE = /^(PG|ERR|KAFKA)_[0-9A-Za-z_]+$/;

/** A code read back from storage or a header, if it is one this table knows. */
export function parseErrorCode(text: string | null | undefined): ErrorCode | undefined {
  if (!text) return undefined;
  if (Object.hasOwn(ERROR_CODES, text)) return text as FixedErrorCode;
  return DYNAMIC_CODE.test(text) ? (text as DynamicErrorCode) : undefined;
}

/** A code for a PermanentError, read back from storage: known and not retryable, else undefined. */
export function parsePermanentCode(text: string | null | undefined): PermanentCode | undefined {
  const code = parseErrorCode(text);
  return code !== undefined && !specOf(code)?.retryable ? (code as PermanentCode) : undefined;
}

/** The table's entry for a code (undefined for the Postgres and librdkafka codes). */
export function specOf(code: string): ErrorCodeSpec | undefined {
  return Object.hasOwn(ERROR_CODES, code) ? ERROR_CODES[code as FixedErrorCode] : undefined;
}

/**
 * True for errors that should slow or pause consumption and not use up an evaluation's retry
 * budget (guarantee 6): rate limits, holds, an open circuit, a busy claim.
 */
export function isProviderPressure(error: unknown): boolean {
  return error instanceof EvalboxError && specOf(error.code)?.providerPressure === true;
}

export interface EvalboxErrorOptions<C extends ErrorCode = ErrorCode> {
  code: C;
  cause?: unknown;
}

export abstract class EvalboxError extends Error {
  abstract readonly retryable: boolean;
  readonly code: ErrorCode;

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

  constructor(message: string, options: EvalboxErrorOptions<RetryableCode> & { retryAfterMs?: number }) {
    super(message, options);
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** Retrying cannot help: invalid input, an unknown entity, a 4xx, a message too large. */
export class PermanentError extends EvalboxError {
  readonly retryable = false;

  constructor(message: string, options: EvalboxErrorOptions<PermanentCode>) {
    super(message, options);
  }
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

/** A statement gave up waiting for a lock (lock_timeout, NOWAIT): SQLSTATE 55P03. */
export const isLockNotAvailable = (error: unknown): boolean => (error as { code?: unknown } | undefined)?.code === '55P03';

// SQLSTATE classes and codes that describe a passing condition of the server or the connection.
const RETRYABLE_SQLSTATE_CLASSES = new Set(['08', '53', '57', '58']);
// 25P03: the server ended a transaction left idle too long (a paused process, idle_in_transaction_session_timeout);
// the work can be done again in a new one.
const RETRYABLE_SQLSTATES = new Set(['40001', '40P01', '55P03', '25P03']);
const PERMANENT_SQLSTATES = new Set(['08P01']);
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
  // 08P01 (protocol violation) is what a NUL in a text parameter gets: the message, not the
  // connection, is at fault, and sending it again fails again.
  if (
    code &&
    !PERMANENT_SQLSTATES.has(code) &&
    (RETRYABLE_SOCKET_CODES.has(code) || RETRYABLE_SQLSTATES.has(code) || RETRYABLE_SQLSTATE_CLASSES.has(code.slice(0, 2)))
  ) {
    return new RetryableError(`database unavailable: ${error.message}`, { code: `PG_${code}`, cause: error });
  }
  // node-postgres reports a dropped connection without a code (and, for the next query on a client
  // whose connection failed, "…connection error and is not queryable"; a client closed by us is not
  // a passing condition).
  if (!code && /Connection terminated|timeout exceeded when trying to connect|connection error and is not queryable/i.test(error.message)) {
    return new RetryableError(`database unavailable: ${error.message}`, { code: 'PG_CONNECTION', cause: error });
  }
  return new PermanentError(error.message, { code: code ? `PG_${code}` : 'PG_ERROR', cause: error });
}
