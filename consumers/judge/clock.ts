// Time for the judge's limiter and breaker, injected so their state machines can be tested
// step by step: the system clock in production, a manual clock in unit tests.

export type TimerHandle = { readonly id: number } | NodeJS.Timeout;

export interface Clock {
  /**
   * Milliseconds on a monotonic clock, for durations and deadlines: a wall-clock step (NTP, a
   * manual change) must not hold a circuit open or a throttle for an hour, nor end either early.
   */
  now(): number;
  /** The wall clock (ms since the epoch): only to read a provider's HTTP-date Retry-After. */
  wallNow(): number;
  /** `unref`: the timer alone must not keep the process alive (notifications, not waiters). */
  setTimeout(fn: () => void, ms: number, options?: { unref?: boolean }): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout(fn, ms, options) {
    const timer = setTimeout(fn, Math.max(0, ms));
    if (options?.unref) timer.unref();
    return timer;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** A clock that moves only when told to; `advance` fires due timers in time order. */
export class ManualClock implements Clock {
  private current: number;
  private nextId = 1;
  private timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start = 1_700_000_000_000) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  wallNow(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { at: this.current + Math.max(0, ms), fn });
    return { id };
  }

  clearTimeout(handle: TimerHandle): void {
    if (typeof handle === 'object' && 'id' in handle && typeof handle.id === 'number') this.timers.delete(handle.id);
  }

  /** Moves time forward by `ms`, running each timer that falls due on the way. */
  advance(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      let due: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.timers) if (entry[1].at <= target && (!due || entry[1].at < due[1].at)) due = entry;
      if (!due) break;
      this.timers.delete(due[0]);
      this.current = Math.max(this.current, due[1].at);
      due[1].fn();
    }
    this.current = target;
  }

  pendingTimers(): number {
    return this.timers.size;
  }
}
