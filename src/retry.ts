// Exponential backoff with full jitter, capped in attempts and age, honouring a server's
// Retry-After hint. Permanent errors end the loop at once.
import { isRetryable, RetryableError } from './errors.js';

export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  maxAttempts: number;
  /** Give up once the first attempt is older than this. */
  maxAgeMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 100, maxMs: 30_000, maxAttempts: 8, maxAgeMs: 10 * 60_000 };

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

/**
 * Runs `work` until it succeeds, a permanent error is thrown, or the policy's attempts or age
 * run out (the last error is rethrown). `onRetry` sees each retry before its delay.
 */
export async function withRetry<T>(
  work: (attempt: number) => Promise<T>,
  policy: BackoffPolicy,
  options: { onRetry?: (error: unknown, attempt: number, delayMs: number) => void; signal?: AbortSignal; now?: () => number } = {},
): Promise<T> {
  const now = options.now ?? Date.now;
  const startedAt = now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await work(attempt);
    } catch (error) {
      const exhausted = attempt >= policy.maxAttempts || now() - startedAt >= policy.maxAgeMs;
      if (!isRetryable(error) || exhausted || options.signal?.aborted) throw error;
      const delayMs = nextDelay(policy, attempt, error);
      options.onRetry?.(error, attempt, delayMs);
      await sleep(delayMs, options.signal);
    }
  }
}
