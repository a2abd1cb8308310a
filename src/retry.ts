// The one retrier: exponential backoff with full jitter, capped in attempts and age, honouring a
// server's Retry-After hint. Permanent errors and programming errors end the loop at once.
import { isRetryable, RetryableError } from './errors.js';

export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  maxAttempts: number;
  /** Give up once the first attempt is older than this. */
  maxAgeMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 100, maxMs: 30_000, maxAttempts: 8, maxAgeMs: 10 * 60_000 };

/**
 * How long a process starting next to a dependency that is not up yet (Postgres restarting or
 * recovering, a broker being restarted) waits for it before failing its start.
 */
export const STARTUP_BACKOFF: BackoffPolicy = { baseMs: 250, maxMs: 5_000, maxAttempts: Number.MAX_SAFE_INTEGER, maxAgeMs: 120_000 };

/** Full jitter: a uniform delay in [0, min(max, base * 2^attempt)). */
export function fullJitterDelay(policy: Pick<BackoffPolicy, 'baseMs' | 'maxMs'>, attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}

/** The delay before the next attempt: the Retry-After hint when the error carries one. */
export function nextDelay(policy: BackoffPolicy, attempt: number, error: unknown, random?: () => number): number {
  if (error instanceof RetryableError && error.retryAfterMs !== undefined) return Math.min(error.retryAfterMs, policy.maxMs);
  return fullJitterDelay(policy, attempt, random);
}

export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** A bug, not a passing condition: retrying the same code cannot help. */
export function isProgrammingError(error: unknown): boolean {
  return error instanceof TypeError || error instanceof ReferenceError || error instanceof SyntaxError || error instanceof RangeError;
}

export interface RetryOptions {
  /** Sees each retry before its delay: the error, the attempts counted so far, the delay. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  /** Which errors are worth another attempt; default isRetryable (the error's own flag, through its causes). */
  retryable?: (error: unknown) => boolean;
  /**
   * Errors that are retried without using up attempts or age (the judge provider pushing back,
   * guarantee 6): they wait their delay and try again, however often.
   */
  uncounted?: (error: unknown) => boolean;
  /** Stops retrying: no attempt starts after it, and the last error is rethrown. */
  signal?: AbortSignal;
  now?: () => number;
  random?: () => number;
}

/**
 * Runs `work` until it succeeds, an error that is not retryable (or a programming error) is
 * thrown, the stop signal fires, or the policy's attempts or age run out; then the last error is
 * rethrown. `work` gets the number of the attempt it is (uncounted failures do not advance it).
 */
export async function withRetry<T>(work: (attempt: number) => Promise<T>, policy: BackoffPolicy, options: RetryOptions = {}): Promise<T> {
  const now = options.now ?? Date.now;
  const retryable = options.retryable ?? isRetryable;
  const startedAt = now();
  // Time spent on uncounted attempts and their waits is not charged to the age either.
  let uncountedMs = 0;
  let counted = 0;
  for (;;) {
    const attemptStarted = now();
    try {
      return await work(counted + 1);
    } catch (error) {
      if (isProgrammingError(error) || !retryable(error) || options.signal?.aborted) throw error;
      const free = options.uncounted?.(error) ?? false;
      if (free) uncountedMs += now() - attemptStarted;
      else {
        counted++;
        if (counted >= policy.maxAttempts || now() - startedAt - uncountedMs >= policy.maxAgeMs) throw error;
      }
      const delayMs = nextDelay(policy, Math.max(counted, 1), error, options.random);
      options.onRetry?.(error, counted, delayMs);
      const sleepStarted = now();
      await sleep(delayMs, options.signal);
      if (free) uncountedMs += now() - sleepStarted;
      if (options.signal?.aborted) throw error;
    }
  }
}
