// A circuit breaker for one judge endpoint. Closed: calls flow and their outcomes fill a sliding
// window (the last `windowSize` calls, none older than `windowMs`); when at least `minCalls` are
// in it and the failure rate reaches `failureRate`, it opens. Open: calls fail at once with a
// RetryableError (JUDGE_CIRCUIT_OPEN, retryAfterMs = time to half-open), so a provider outage
// slows the consumer down instead of burning retries into the DLT. After the cool-down it is
// half-open: one probe goes through; success closes it, failure reopens it with a doubled
// cool-down (capped).
import { RetryableError } from '../../src/errors.js';
import { systemClock, type Clock, type TimerHandle } from './clock.js';
import type { JudgeEventEmitter } from './events.js';

export interface BreakerOptions {
  windowSize?: number;
  windowMs?: number;
  minCalls?: number;
  /** Open when failures / calls in the window reach this. */
  failureRate?: number;
  coolDownMs?: number;
  maxCoolDownMs?: number;
  /** retryAfterMs given to callers turned away while a probe is in flight. */
  probeRetryMs?: number;
}

export type BreakerState = 'closed' | 'open' | 'half_open';

/** What a call's outcome says about the provider's health. */
export type CallHealth = 'success' | 'failure' | 'ignore';

export interface BreakerTicket {
  readonly probe: boolean;
  /** Idempotent; 'ignore' (a 429, a cancelled call) gives a probe slot back without a verdict. */
  record(health: CallHealth): void;
}

export interface BreakerSnapshot {
  state: BreakerState;
  /** Epoch ms at which an open circuit lets a probe through (0 unless open). */
  halfOpenAt: number;
  calls: number;
  failures: number;
}

export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private window: { at: number; failed: boolean }[] = [];
  private openedUntil = 0;
  private coolDown: number;
  private probeInFlight = false;
  private halfOpenTimer: TimerHandle | undefined;
  private readonly opts: Required<BreakerOptions>;

  constructor(
    readonly endpoint: string,
    options: BreakerOptions = {},
    private readonly clock: Clock = systemClock,
    private readonly events?: JudgeEventEmitter,
  ) {
    this.opts = {
      windowSize: options.windowSize ?? 20,
      windowMs: options.windowMs ?? 60_000,
      minCalls: options.minCalls ?? 5,
      failureRate: options.failureRate ?? 0.5,
      coolDownMs: options.coolDownMs ?? 10_000,
      maxCoolDownMs: options.maxCoolDownMs ?? 120_000,
      probeRetryMs: options.probeRetryMs ?? 1000,
    };
    this.coolDown = this.opts.coolDownMs;
  }

  /** The state as of now: an open circuit whose cool-down has passed reads as half-open. */
  state(): BreakerState {
    if (this.current === 'open' && this.clock.now() >= this.openedUntil) return 'half_open';
    return this.current;
  }

  snapshot(): BreakerSnapshot {
    this.prune();
    const state = this.state();
    return { state, halfOpenAt: state === 'open' ? this.openedUntil : 0, calls: this.window.length, failures: this.window.filter((w) => w.failed).length };
  }

  /** Milliseconds until a call could be let through (0 when closed or a probe slot is free). */
  retryAfterMs(): number {
    const state = this.state();
    if (state === 'open') return this.openedUntil - this.clock.now();
    if (state === 'half_open' && this.probeInFlight) return this.opts.probeRetryMs;
    return 0;
  }

  /** Lets a call through or throws RetryableError(JUDGE_CIRCUIT_OPEN). */
  admit(): BreakerTicket {
    const state = this.state();
    if (state === 'closed') return this.ticket(false);
    if (state === 'half_open' && !this.probeInFlight) {
      this.current = 'half_open';
      this.probeInFlight = true;
      return this.ticket(true);
    }
    const retryAfterMs = Math.max(1, this.retryAfterMs());
    throw new RetryableError(
      `judge endpoint ${this.endpoint}: circuit ${state === 'open' ? 'open' : 'half-open, probe in flight'}; retry in ${retryAfterMs} ms`,
      {
        code: 'JUDGE_CIRCUIT_OPEN',
        retryAfterMs,
      },
    );
  }

  private ticket(probe: boolean): BreakerTicket {
    let done = false;
    return {
      probe,
      record: (health) => {
        if (done) return;
        done = true;
        if (probe) this.onProbe(health);
        else this.onCall(health);
      },
    };
  }

  private onCall(health: CallHealth): void {
    // Calls admitted before the circuit opened say nothing about the probe to come.
    if (this.current !== 'closed' || health === 'ignore') return;
    this.window.push({ at: this.clock.now(), failed: health === 'failure' });
    this.prune();
    if (health !== 'failure') return;
    const failures = this.window.filter((w) => w.failed).length;
    if (this.window.length >= this.opts.minCalls && failures / this.window.length >= this.opts.failureRate) {
      this.open(failures / this.window.length, this.window.length);
    }
  }

  private onProbe(health: CallHealth): void {
    this.probeInFlight = false;
    if (health === 'success') {
      this.current = 'closed';
      this.window = [];
      this.coolDown = this.opts.coolDownMs;
      this.events?.emit('judge:circuitClosed', { endpoint: this.endpoint });
    } else if (health === 'failure') {
      this.coolDown = Math.min(this.opts.maxCoolDownMs, this.coolDown * 2);
      this.open(1, 1);
    }
  }

  private open(failureRate: number, calls: number): void {
    this.current = 'open';
    this.openedUntil = this.clock.now() + this.coolDown;
    this.events?.emit('judge:circuitOpened', { endpoint: this.endpoint, retryAfterMs: this.coolDown, failureRate, calls });
    if (this.halfOpenTimer) this.clock.clearTimeout(this.halfOpenTimer);
    // Announces the end of the cool-down so a paused consumer knows when to let a probe through.
    this.halfOpenTimer = this.clock.setTimeout(
      () => {
        this.halfOpenTimer = undefined;
        if (this.current === 'open') this.events?.emit('judge:circuitHalfOpen', { endpoint: this.endpoint });
      },
      this.coolDown,
      { unref: true },
    );
  }

  private prune(): void {
    const oldest = this.clock.now() - this.opts.windowMs;
    while (this.window.length > 0 && ((this.window[0] as { at: number }).at < oldest || this.window.length > this.opts.windowSize)) this.window.shift();
  }

  close(): void {
    if (this.halfOpenTimer) this.clock.clearTimeout(this.halfOpenTimer);
    this.halfOpenTimer = undefined;
  }
}
