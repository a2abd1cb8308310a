// Adaptive concurrency for one judge endpoint (AIMD): the in-flight limit grows by about one per
// window of successes and halves on a 429, and a 429's Retry-After holds the whole endpoint
// until then. Callers wait in FIFO order for a slot, for a bounded time; a hold longer than that
// bound fails at once with a RetryableError carrying the hold, so the consumer can pause instead
// of spending its retries.
import { RetryableError } from '../../src/errors.js';
import { systemClock, type Clock, type TimerHandle } from './clock.js';
import type { JudgeEventEmitter } from './events.js';

export interface LimiterOptions {
  /** The configured concurrency: the ceiling the limit grows back to. */
  maxLimit: number;
  /** Where the limit starts; defaults to maxLimit (no slow start: 429s teach us the real limit). */
  initialLimit?: number;
  minLimit?: number;
  /** Added to the limit per full window of successes (limit += increase / limit per success). */
  increase?: number;
  /** The limit is multiplied by this on a 429, once per window. */
  decreaseFactor?: number;
  /** The hold after a 429 without a Retry-After header. */
  defaultRetryAfterMs?: number;
  /** A Retry-After above this is capped (a broken proxy must not park us for a day). */
  maxRetryAfterMs?: number;
  /** How long a caller may wait for a slot or for a hold to end before it gets a RetryableError. */
  maxQueueWaitMs?: number;
}

export const DEFAULT_QUEUE_WAIT_MS = 30_000;

export type PermitResult = 'success' | 'rate_limited' | 'ignore';

export interface Permit {
  /** Ends the slot. `retryAfterMs` goes with 'rate_limited'. Idempotent. */
  release(result: PermitResult, retryAfterMs?: number): void;
}

export interface LimiterState {
  limit: number;
  inFlight: number;
  queued: number;
  /** Epoch ms until which no request may start (0 when not held). */
  throttledUntil: number;
}

interface Waiter {
  resolve(permit: Permit): void;
  reject(error: Error): void;
  timer: TimerHandle;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export class AimdLimiter {
  private limit: number;
  private inFlight = 0;
  private throttledUntil = 0;
  private issued = 0;
  /** Permits issued up to here belong to a window that already paid a decrease. */
  private decreasedThrough = 0;
  private readonly queue: Waiter[] = [];
  private wakeTimer: TimerHandle | undefined;
  private readonly opts: Required<LimiterOptions>;

  constructor(
    readonly endpoint: string,
    options: LimiterOptions,
    private readonly clock: Clock = systemClock,
    private readonly events?: JudgeEventEmitter,
  ) {
    if (!(options.maxLimit >= 1)) throw new RangeError('maxLimit must be >= 1');
    this.opts = {
      maxLimit: options.maxLimit,
      initialLimit: options.initialLimit ?? options.maxLimit,
      minLimit: options.minLimit ?? 1,
      increase: options.increase ?? 1,
      decreaseFactor: options.decreaseFactor ?? 0.5,
      defaultRetryAfterMs: options.defaultRetryAfterMs ?? 1000,
      maxRetryAfterMs: options.maxRetryAfterMs ?? 5 * 60_000,
      maxQueueWaitMs: options.maxQueueWaitMs ?? DEFAULT_QUEUE_WAIT_MS,
    };
    this.limit = Math.min(this.opts.maxLimit, Math.max(this.opts.minLimit, this.opts.initialLimit));
  }

  state(): LimiterState {
    const now = this.clock.now();
    return {
      limit: Math.floor(this.limit),
      inFlight: this.inFlight,
      queued: this.queue.length,
      throttledUntil: this.throttledUntil > now ? this.throttledUntil : 0,
    };
  }

  /** A slot now, or undefined (held, full, or others already waiting). */
  tryAcquire(): Permit | undefined {
    if (this.queue.length > 0 || !this.canStart()) return undefined;
    return this.grant();
  }

  /** Waits for a slot in FIFO order, at most maxQueueWaitMs; a longer hold fails at once. */
  acquire(signal?: AbortSignal): Promise<Permit> {
    if (signal?.aborted) return Promise.reject(abortedError(this.endpoint, signal));
    const held = this.throttledUntil - this.clock.now();
    if (held > this.opts.maxQueueWaitMs) return Promise.reject(this.throttledError(held));
    const now = this.tryAcquire();
    if (now) return Promise.resolve(now);
    return new Promise<Permit>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        signal,
        timer: this.clock.setTimeout(() => {
          this.removeWaiter(waiter);
          const remaining = this.throttledUntil - this.clock.now();
          reject(
            remaining > 0
              ? this.throttledError(remaining)
              : new RetryableError(`judge endpoint ${this.endpoint}: no free slot within ${this.opts.maxQueueWaitMs} ms`, { code: 'JUDGE_QUEUE_TIMEOUT' }),
          );
        }, this.opts.maxQueueWaitMs),
      };
      if (signal) {
        waiter.onAbort = () => {
          this.removeWaiter(waiter);
          reject(abortedError(this.endpoint, signal));
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.queue.push(waiter);
      this.scheduleWake();
    });
  }

  private canStart(): boolean {
    return this.clock.now() >= this.throttledUntil && this.inFlight < Math.floor(this.limit);
  }

  private grant(): Permit {
    this.inFlight++;
    const seq = ++this.issued;
    let released = false;
    return {
      release: (result, retryAfterMs) => {
        if (released) return;
        released = true;
        this.inFlight--;
        if (result === 'success') this.onSuccess();
        else if (result === 'rate_limited') this.onRateLimited(seq, retryAfterMs);
        this.pump();
      },
    };
  }

  private onSuccess(): void {
    const before = Math.floor(this.limit);
    this.limit = Math.min(this.opts.maxLimit, this.limit + this.opts.increase / this.limit);
    if (Math.floor(this.limit) !== before) this.emitLimit();
  }

  private onRateLimited(seq: number, retryAfterMs: number | undefined): void {
    // Requests that were already in flight when we cut the limit report the same overload:
    // one decrease per window, not one per 429 of a burst.
    if (seq > this.decreasedThrough) {
      this.decreasedThrough = this.issued;
      const before = Math.floor(this.limit);
      this.limit = Math.max(this.opts.minLimit, Math.floor(this.limit * this.opts.decreaseFactor));
      if (Math.floor(this.limit) !== before) this.emitLimit();
    }
    const holdMs = Math.min(this.opts.maxRetryAfterMs, Math.max(0, retryAfterMs ?? this.opts.defaultRetryAfterMs));
    const until = this.clock.now() + holdMs;
    if (until > this.throttledUntil) {
      this.throttledUntil = until;
      this.events?.emit('judge:throttled', { endpoint: this.endpoint, until, retryAfterMs: holdMs, limit: Math.floor(this.limit) });
      this.scheduleWake(true);
    }
  }

  /** Starts as many waiters as the limit and the hold allow. */
  private pump(): void {
    while (this.queue.length > 0 && this.canStart()) {
      const waiter = this.queue.shift() as Waiter;
      this.clock.clearTimeout(waiter.timer);
      if (waiter.signal && waiter.onAbort) waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.resolve(this.grant());
    }
    this.scheduleWake();
  }

  /** One timer for the end of the current hold: it restarts waiters and announces the end. */
  private scheduleWake(force = false): void {
    const now = this.clock.now();
    if (this.throttledUntil <= now) return;
    if (this.wakeTimer && !force) {
      // A waiter arrived while the hold timer was unreferenced: it must now keep the process alive.
      if (this.queue.length > 0) (this.wakeTimer as { ref?: () => void }).ref?.();
      return;
    }
    if (this.wakeTimer) this.clock.clearTimeout(this.wakeTimer);
    // Kept referenced only while someone waits; a hold with no waiter must not keep a process alive.
    this.wakeTimer = this.clock.setTimeout(
      () => {
        this.wakeTimer = undefined;
        if (this.clock.now() < this.throttledUntil) return this.scheduleWake();
        this.throttledUntil = 0;
        this.events?.emit('judge:unthrottled', { endpoint: this.endpoint });
        this.pump();
      },
      this.throttledUntil - now,
      { unref: this.queue.length === 0 },
    );
  }

  private removeWaiter(waiter: Waiter): void {
    const index = this.queue.indexOf(waiter);
    if (index >= 0) this.queue.splice(index, 1);
    this.clock.clearTimeout(waiter.timer);
    if (waiter.signal && waiter.onAbort) waiter.signal.removeEventListener('abort', waiter.onAbort);
  }

  private throttledError(remainingMs: number): RetryableError {
    return new RetryableError(`judge endpoint ${this.endpoint} is rate limited for another ${Math.ceil(remainingMs)} ms`, {
      code: 'JUDGE_THROTTLED',
      retryAfterMs: Math.ceil(remainingMs),
    });
  }

  private emitLimit(): void {
    this.events?.emit('judge:limitChanged', { endpoint: this.endpoint, limit: Math.floor(this.limit), inFlight: this.inFlight });
  }

  /** Fails every waiter (shutdown). */
  close(): void {
    if (this.wakeTimer) this.clock.clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    for (const waiter of this.queue.splice(0)) {
      this.clock.clearTimeout(waiter.timer);
      if (waiter.signal && waiter.onAbort) waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.reject(new RetryableError(`judge endpoint ${this.endpoint} is shutting down`, { code: 'JUDGE_ABORTED' }));
    }
  }
}

export function abortedError(endpoint: string, signal: AbortSignal): RetryableError {
  return new RetryableError(`judge request to ${endpoint} aborted`, { code: 'JUDGE_ABORTED', cause: signal.reason });
}
