// The judge's circuit breaker, step by step on a manual clock: opens on a failure rate over a
// sliding window with a minimum count, turns calls away with a RetryableError carrying the time
// to half-open, lets exactly one probe through after the cool-down, closes on its success and
// reopens (with a longer cool-down) on its failure.
import { describe, expect, it, jest } from '@jest/globals';
import { RetryableError } from '../../src/errors.js';
import { CircuitBreaker, type BreakerOptions } from '../../consumers/judge/breaker.js';
import { ManualClock, systemClock } from '../../consumers/judge/clock.js';
import { createJudgeEvents } from '../../consumers/judge/events.js';

function setup(options: BreakerOptions = {}) {
  const clock = new ManualClock();
  const events = createJudgeEvents();
  const log: string[] = [];
  events.on('judge:circuitOpened', (e) => log.push(`opened:${e.retryAfterMs}`));
  events.on('judge:circuitHalfOpen', () => log.push('half_open'));
  events.on('judge:circuitClosed', () => log.push('closed'));
  const breaker = new CircuitBreaker(
    'primary',
    { windowSize: 10, windowMs: 60_000, minCalls: 4, failureRate: 0.5, coolDownMs: 5000, maxCoolDownMs: 12_000, probeRetryMs: 700, ...options },
    clock,
    events,
  );
  const call = (health: 'success' | 'failure' | 'ignore') => breaker.admit().record(health);
  return { clock, breaker, log, call };
}

describe('circuit breaker', () => {
  it('stays closed below the minimum number of calls, however many of them fail', () => {
    const { breaker, call } = setup();
    call('failure');
    call('failure');
    call('failure');
    expect(breaker.state()).toBe('closed');
  });

  it('guarantee 6: opens at the failure-rate threshold and turns calls away with RetryableError(JUDGE_CIRCUIT_OPEN) and the time to half-open', () => {
    const { clock, breaker, log, call } = setup();
    call('success');
    call('failure');
    call('success');
    expect(breaker.state()).toBe('closed');
    call('failure'); // 2 of 4 = 50 %
    expect(breaker.state()).toBe('open');
    expect(log).toEqual(['opened:5000']);

    clock.advance(2000);
    let error: unknown;
    try {
      breaker.admit();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(RetryableError);
    expect(error).toMatchObject({ code: 'JUDGE_CIRCUIT_OPEN', retryAfterMs: 3000 });
    expect(breaker.snapshot()).toMatchObject({ state: 'open', halfOpenAt: clock.now() + 3000 });
  });

  it('half-opens after the cool-down (announced by an event), lets exactly one probe through, and closes on its success', () => {
    const { clock, breaker, log, call } = setup();
    for (let i = 0; i < 4; i++) call('failure');
    clock.advance(5000);
    expect(log).toEqual(['opened:5000', 'half_open']);
    expect(breaker.state()).toBe('half_open');
    const probe = breaker.admit();
    expect(probe.probe).toBe(true);
    // While the probe is out, others are turned away with a short retry hint.
    expect(() => breaker.admit()).toThrow(expect.objectContaining({ code: 'JUDGE_CIRCUIT_OPEN', retryAfterMs: 700 }));
    probe.record('success');
    expect(breaker.state()).toBe('closed');
    expect(log.at(-1)).toBe('closed');
    // The window starts afresh: old failures do not reopen it.
    call('failure');
    expect(breaker.state()).toBe('closed');
  });

  it('reopens on a failed probe with a doubled cool-down, capped', () => {
    const { clock, breaker, log, call } = setup();
    for (let i = 0; i < 4; i++) call('failure');
    clock.advance(5000);
    breaker.admit().record('failure');
    expect(breaker.state()).toBe('open');
    clock.advance(10_000);
    breaker.admit().record('failure');
    clock.advance(12_000);
    breaker.admit().record('failure');
    expect(log.filter((l) => l.startsWith('opened'))).toEqual(['opened:5000', 'opened:10000', 'opened:12000', 'opened:12000']);
  });

  it('a probe that ends without a verdict (a 429, a cancelled call) frees the probe slot and keeps it half-open', () => {
    const { clock, breaker, call } = setup();
    for (let i = 0; i < 4; i++) call('failure');
    clock.advance(5000);
    breaker.admit().record('ignore');
    expect(breaker.state()).toBe('half_open');
    const next = breaker.admit();
    expect(next.probe).toBe(true);
    next.record('success');
    expect(breaker.state()).toBe('closed');
  });

  it('forgets failures older than the window and beyond its size', () => {
    const { clock, breaker, call } = setup({ windowMs: 10_000, windowSize: 4 });
    call('failure');
    call('failure');
    clock.advance(10_001);
    call('success');
    call('failure');
    call('success');
    // Only the last three are in the window (two aged out): 1 of 3 failed.
    expect(breaker.state()).toBe('closed');
    expect(breaker.snapshot()).toMatchObject({ calls: 3, failures: 1 });
    call('success');
    call('success');
    expect(breaker.snapshot()).toMatchObject({ calls: 4, failures: 1 });
  });

  it('ignores outcomes of calls that were admitted before the circuit opened', () => {
    const { clock, breaker, call } = setup();
    const late = breaker.admit();
    for (let i = 0; i < 4; i++) call('failure');
    late.record('success');
    expect(breaker.state()).toBe('open');
    clock.advance(5000);
    expect(breaker.state()).toBe('half_open');
  });

  it('a wall-clock step neither holds an open circuit for an hour nor closes it early (the system clock is monotonic)', () => {
    const breaker = new CircuitBreaker('primary', { windowSize: 10, minCalls: 4, failureRate: 0.5, coolDownMs: 5000 }, systemClock);
    for (let i = 0; i < 4; i++) breaker.admit().record('failure');
    expect(breaker.state()).toBe('open');
    const wall = Date.now();
    const step = jest.spyOn(Date, 'now');
    try {
      step.mockReturnValue(wall - 3_600_000); // the wall clock steps back an hour
      expect(breaker.retryAfterMs()).toBeLessThanOrEqual(5000);
      step.mockReturnValue(wall + 3_600_000); // and forward an hour
      expect(breaker.state()).toBe('open');
      expect(breaker.retryAfterMs()).toBeGreaterThan(0);
    } finally {
      step.mockRestore();
      breaker.close();
    }
  });
});
