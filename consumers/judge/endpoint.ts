// One judge endpoint at run time: its HTTP connection pool, its AIMD limiter and circuit
// breaker, and what it has taught us (whether it honours response_format). Admission (breaker,
// then a limiter slot) is separate from the HTTP call so the cache can look up and claim between
// the two, and so nothing is admitted for a result that turns out to be cached.
import { Pool } from 'undici';
import { CircuitBreaker, type BreakerState, type CallHealth } from './breaker.js';
import { systemClock, type Clock } from './clock.js';
import type { JudgeEndpointConfig } from './config.js';
import type { JudgeEventEmitter } from './events.js';
import { AimdLimiter, type PermitResult } from './limiter.js';
import type { ResponseFormatMode } from './rubrics.js';

/** What the consumer reads to decide whether to pause. */
export interface EndpointState {
  endpoint: string;
  model: string;
  /** True while calls are turned away (open, or half-open with its probe in flight). */
  open: boolean;
  circuit: BreakerState;
  /** Epoch ms until which the endpoint is held after a 429 (0 when not held). */
  throttledUntil: number;
  /** Milliseconds until a call could start: max(hold, time to half-open); 0 when it can now. */
  retryAfterMs: number;
  limit: number;
  inFlight: number;
  queued: number;
  responseFormat: ResponseFormatMode;
}

/** How a finished call reports to the breaker and the limiter. */
export interface CallReport {
  health: CallHealth;
  permit: PermitResult;
  retryAfterMs?: number;
}

export interface Admission {
  readonly probe: boolean;
  /** Idempotent. */
  release(report: CallReport): void;
}

export class JudgeEndpoint {
  readonly name: string;
  readonly model: string;
  readonly origin: string;
  /** The request path of chat completions under the base URL. */
  readonly path: string;
  readonly dispatcher: Pool;
  readonly limiter: AimdLimiter;
  readonly breaker: CircuitBreaker;
  /** Learnt once per endpoint: a server that rejected json_schema is asked for plain JSON from then on. */
  responseFormat: ResponseFormatMode;

  constructor(
    readonly config: JudgeEndpointConfig,
    private readonly clock: Clock = systemClock,
    events?: JudgeEventEmitter,
  ) {
    this.name = config.name;
    this.model = config.model;
    const url = new URL(config.baseUrl);
    this.origin = url.origin;
    const base = url.pathname.replace(/\/+$/, '');
    this.path = `${base.endsWith('/v1') ? base : `${base}/v1`}/chat/completions`;
    this.responseFormat = config.responseFormat;
    this.dispatcher = new Pool(this.origin, {
      // A few spare connections: a timed-out request's socket is destroyed, not reused at once.
      connections: config.maxConcurrency + 4,
      // Off: the client's own deadline bounds each request (client.ts, deadline()), which does not
      // throw away an answer that arrived while the event loop was blocked.
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: { timeout: config.connectTimeoutMs },
    });
    this.limiter = new AimdLimiter(config.name, { ...config.limiter, maxLimit: config.maxConcurrency }, clock, events);
    this.breaker = new CircuitBreaker(config.name, config.breaker, clock, events);
  }

  state(): EndpointState {
    const limiter = this.limiter.state();
    const breaker = this.breaker.snapshot();
    const breakerWait = this.breaker.retryAfterMs();
    const holdWait = Math.max(0, limiter.throttledUntil - this.clock.now());
    return {
      endpoint: this.name,
      model: this.model,
      open: breakerWait > 0,
      circuit: breaker.state,
      throttledUntil: limiter.throttledUntil,
      retryAfterMs: Math.max(breakerWait, holdWait),
      limit: limiter.limit,
      inFlight: limiter.inFlight,
      queued: limiter.queued,
      responseFormat: this.responseFormat,
    };
  }

  /**
   * Lets one call start: the breaker first (fails fast with JUDGE_CIRCUIT_OPEN), then a limiter
   * slot (waits, or fails with JUDGE_THROTTLED / JUDGE_QUEUE_TIMEOUT).
   */
  async admit(signal?: AbortSignal): Promise<Admission> {
    const ticket = this.breaker.admit();
    let permit;
    try {
      permit = await this.limiter.acquire(signal);
    } catch (error) {
      ticket.record('ignore');
      throw error;
    }
    let released = false;
    return {
      probe: ticket.probe,
      release(report) {
        if (released) return;
        released = true;
        ticket.record(report.health);
        permit.release(report.permit, report.retryAfterMs);
      },
    };
  }

  async close(): Promise<void> {
    this.limiter.close();
    this.breaker.close();
    await this.dispatcher.destroy();
  }
}
