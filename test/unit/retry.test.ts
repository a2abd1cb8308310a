// The one retrier (src/retry.ts): full jitter, caps by attempts and by age, Retry-After, the
// onRetry hook, errors that do not use up the budget (provider pressure), and no retry of
// programming errors or after the stop signal.
import { describe, expect, it } from '@jest/globals';
import { PermanentError, RetryableError } from '../../src/errors.js';
import { fullJitterDelay, nextDelay, withRetry, type BackoffPolicy } from '../../src/retry.js';

const policy: BackoffPolicy = { baseMs: 1, maxMs: 4, maxAttempts: 4, maxAgeMs: 60_000 };
const flaky = (code: 'JUDGE_SERVER_ERROR' | 'JUDGE_RATE_LIMITED' = 'JUDGE_SERVER_ERROR') => new RetryableError('try again', { code });

describe('withRetry', () => {
  it('full jitter: each delay is uniform below min(max, base * 2^(attempt-1))', () => {
    const p = { baseMs: 100, maxMs: 1000 };
    expect(fullJitterDelay(p, 1, () => 0.999)).toBe(99);
    expect(fullJitterDelay(p, 3, () => 0.5)).toBe(200);
    expect(fullJitterDelay(p, 10, () => 0.999)).toBe(999);
    expect(fullJitterDelay(p, 10, () => 0)).toBe(0);
  });

  it('honours a Retry-After hint, capped by the policy maximum', () => {
    expect(nextDelay({ ...policy, maxMs: 10_000 }, 1, new RetryableError('429', { code: 'JUDGE_RATE_LIMITED', retryAfterMs: 3000 }))).toBe(3000);
    expect(nextDelay({ ...policy, maxMs: 1000 }, 1, new RetryableError('429', { code: 'JUDGE_RATE_LIMITED', retryAfterMs: 3000 }))).toBe(1000);
  });

  it('retries a retryable error until it succeeds, telling onRetry each attempt and delay', async () => {
    const seen: [number, number][] = [];
    let calls = 0;
    const result = await withRetry(
      async (attempt) => {
        calls++;
        if (attempt < 3) throw new RetryableError('429', { code: 'JUDGE_RATE_LIMITED', retryAfterMs: 2 });
        return attempt;
      },
      policy,
      { onRetry: (_error, attempt, delayMs) => seen.push([attempt, delayMs]) },
    );
    expect(result).toBe(3);
    expect(calls).toBe(3);
    expect(seen).toEqual([
      [1, 2],
      [2, 2],
    ]);
  });

  it('gives up after maxAttempts and rethrows the last error', async () => {
    let calls = 0;
    await expect(
      withRetry(async () => {
        calls++;
        throw flaky();
      }, policy),
    ).rejects.toMatchObject({ code: 'JUDGE_SERVER_ERROR' });
    expect(calls).toBe(4);
  });

  it('gives up once the first attempt is older than maxAgeMs, whatever attempts are left', async () => {
    let clock = 0;
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          clock += 400;
          throw flaky();
        },
        { ...policy, maxAttempts: 100, maxAgeMs: 1000 },
        { now: () => clock },
      ),
    ).rejects.toBeInstanceOf(RetryableError);
    expect(calls).toBe(3);
  });

  it('a permanent error ends it at once', async () => {
    let calls = 0;
    await expect(
      withRetry(async () => {
        calls++;
        throw new PermanentError('bad input', { code: 'INVALID_EVENT' });
      }, policy),
    ).rejects.toBeInstanceOf(PermanentError);
    expect(calls).toBe(1);
  });

  it('bails at once on a programming error, even where every error is treated as retryable', async () => {
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          (undefined as unknown as { f(): void }).f();
        },
        policy,
        { retryable: () => true },
      ),
    ).rejects.toBeInstanceOf(TypeError);
    expect(calls).toBe(1);
    const unknown = { calls: 0 };
    await expect(
      withRetry(
        async () => {
          unknown.calls++;
          if (unknown.calls < 3) throw new Error('socket hang up');
          return 'ok';
        },
        policy,
        { retryable: () => true },
      ),
    ).resolves.toBe('ok');
  });

  it('guarantee 6: errors marked uncounted (provider pressure) are retried without using up attempts or age', async () => {
    let clock = 0;
    const attempts: number[] = [];
    const outcome = withRetry(
      async (attempt) => {
        attempts.push(attempt);
        clock += 1000;
        if (attempts.length <= 10) throw flaky('JUDGE_RATE_LIMITED');
        throw flaky('JUDGE_SERVER_ERROR');
      },
      { ...policy, maxAttempts: 2, maxAgeMs: 5000 },
      { now: () => clock, uncounted: (error) => (error as RetryableError).code === 'JUDGE_RATE_LIMITED' },
    );
    await expect(outcome).rejects.toMatchObject({ code: 'JUDGE_SERVER_ERROR' });
    // Ten pressure retries (10 s on this clock, twice maxAgeMs) all ran as attempt 1 and cost no
    // age; the two counted failures then use up maxAttempts.
    expect(attempts).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]);
  });

  it('stops after the stop signal: no further attempt once aborted', async () => {
    const controller = new AbortController();
    let calls = 0;
    const outcome = withRetry(
      async () => {
        calls++;
        controller.abort();
        throw flaky();
      },
      { ...policy, baseMs: 10_000, maxMs: 10_000 },
      { signal: controller.signal },
    );
    await expect(outcome).rejects.toMatchObject({ code: 'JUDGE_SERVER_ERROR' });
    expect(calls).toBe(1);
  });
});
