// The judge's AIMD concurrency limiter, step by step on a manual clock: additive increase,
// one multiplicative decrease per window of 429s, the Retry-After hold, FIFO waiters, bounded
// waits that fail with a RetryableError carrying the hold.
import { describe, expect, it } from '@jest/globals';
import { RetryableError } from '../../src/errors.js';
import { ManualClock } from '../../consumers/judge/clock.js';
import { createJudgeEvents, type JudgeEvents } from '../../consumers/judge/events.js';
import { AimdLimiter, type Permit } from '../../consumers/judge/limiter.js';

const flush = () => new Promise((resolve) => setImmediate(resolve));

function setup(options: Partial<ConstructorParameters<typeof AimdLimiter>[1]> = {}) {
  const clock = new ManualClock();
  const events = createJudgeEvents();
  const seen: { name: keyof JudgeEvents; payload: unknown }[] = [];
  for (const name of ['judge:throttled', 'judge:unthrottled', 'judge:limitChanged'] as const)
    events.on(name, (payload: unknown) => seen.push({ name, payload }));
  const limiter = new AimdLimiter('primary', { maxLimit: 8, ...options }, clock, events);
  return { clock, limiter, seen };
}

describe('AIMD limiter', () => {
  it('starts at the configured concurrency and turns the next caller away when full', () => {
    const { limiter } = setup({ maxLimit: 3 });
    const permits = [limiter.tryAcquire(), limiter.tryAcquire(), limiter.tryAcquire()];
    expect(permits.every(Boolean)).toBe(true);
    expect(limiter.tryAcquire()).toBeUndefined();
    expect(limiter.state()).toMatchObject({ limit: 3, inFlight: 3 });
    permits[0]?.release('success');
    expect(limiter.tryAcquire()).toBeDefined();
  });

  it('guarantee 6: a burst of 429s halves the limit once, holds the endpoint until Retry-After, then lets waiters through in order', async () => {
    const { clock, limiter, seen } = setup({ maxLimit: 8 });
    const permits = Array.from({ length: 8 }, () => limiter.tryAcquire() as Permit);
    // All eight in-flight calls come back 429: one overload signal, one decrease.
    for (const p of permits) p.release('rate_limited', 2000);
    expect(limiter.state()).toMatchObject({ limit: 4, inFlight: 0, throttledUntil: clock.now() + 2000 });
    expect(seen.filter((e) => e.name === 'judge:throttled')).toHaveLength(1);

    // Held: nobody starts, even with free slots.
    expect(limiter.tryAcquire()).toBeUndefined();
    const order: number[] = [];
    const waiters = [1, 2, 3, 4, 5].map((n) => limiter.acquire().then((p) => (order.push(n), p)));
    clock.advance(1999);
    await flush();
    expect(order).toEqual([]);
    clock.advance(1);
    await flush();
    // The limit is now 4: four waiters start in FIFO order, the fifth waits for a slot.
    expect(order).toEqual([1, 2, 3, 4]);
    expect(seen.some((e) => e.name === 'judge:unthrottled')).toBe(true);
    (await waiters[0])?.release('success');
    await flush();
    expect(order).toEqual([1, 2, 3, 4, 5]);
    for (const w of waiters.slice(1)) (await w).release('success');
  });

  it('grows the limit back by about one per window of successes, up to the configured ceiling', () => {
    const { limiter } = setup({ maxLimit: 8, initialLimit: 2 });
    let successes = 0;
    while (limiter.state().limit < 8) {
      const p = limiter.tryAcquire() as Permit;
      p.release('success');
      successes++;
      expect(successes).toBeLessThan(100);
    }
    // About L successes per +1 at limit L (≈30 from 2 to 8): additive, not slow-start doubling (≈3).
    expect(successes).toBeGreaterThan(20);
    expect(successes).toBeLessThan(40);
    for (let i = 0; i < 50; i++) (limiter.tryAcquire() as Permit).release('success');
    expect(limiter.state().limit).toBe(8);
  });

  it('never goes below the minimum limit, and a later 429 (a new window) decreases again', () => {
    const { limiter } = setup({ maxLimit: 4 });
    (limiter.tryAcquire() as Permit).release('rate_limited', 0);
    expect(limiter.state().limit).toBe(2);
    (limiter.tryAcquire() as Permit).release('rate_limited', 0);
    expect(limiter.state().limit).toBe(1);
    (limiter.tryAcquire() as Permit).release('rate_limited', 0);
    expect(limiter.state().limit).toBe(1);
  });

  it('guarantee 6: a hold longer than the wait bound fails at once with RetryableError(JUDGE_THROTTLED) and its retryAfterMs', async () => {
    const { limiter } = setup({ maxQueueWaitMs: 1000 });
    (limiter.tryAcquire() as Permit).release('rate_limited', 30_000);
    const error = await limiter.acquire().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RetryableError);
    expect(error).toMatchObject({ code: 'JUDGE_THROTTLED', retryAfterMs: 30_000 });
  });

  it('a 429 without Retry-After holds for the default, and a huge Retry-After is capped', () => {
    const { clock, limiter } = setup({ defaultRetryAfterMs: 1500, maxRetryAfterMs: 60_000 });
    limiter.tryAcquire()?.release('rate_limited');
    expect(limiter.state().throttledUntil).toBe(clock.now() + 1500);
    clock.advance(1500);
    (limiter.tryAcquire() as Permit).release('rate_limited', 86_400_000);
    expect(limiter.state().throttledUntil).toBe(clock.now() + 60_000);
  });

  it('a waiter that finds no slot within the bound gets RetryableError(JUDGE_QUEUE_TIMEOUT); an aborted one leaves the queue', async () => {
    const { clock, limiter } = setup({ maxLimit: 1, maxQueueWaitMs: 500 });
    const held = limiter.tryAcquire() as Permit;
    const waiting = limiter.acquire().catch((e: unknown) => e);
    const controller = new AbortController();
    const aborted = limiter.acquire(controller.signal).catch((e: unknown) => e);
    controller.abort();
    expect(await aborted).toMatchObject({ code: 'JUDGE_ABORTED' });
    expect(limiter.state().queued).toBe(1);
    clock.advance(500);
    expect(await waiting).toMatchObject({ code: 'JUDGE_QUEUE_TIMEOUT' });
    expect(limiter.state().queued).toBe(0);
    held.release('success');
    expect(limiter.state().inFlight).toBe(0);
  });

  it('release is idempotent', () => {
    const { limiter } = setup({ maxLimit: 2 });
    const p = limiter.tryAcquire() as Permit;
    p.release('success');
    p.release('success');
    expect(limiter.state().inFlight).toBe(0);
  });
});
