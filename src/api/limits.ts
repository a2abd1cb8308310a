// Per-application quotas, so one tenant cannot starve the others: a token bucket (rate and
// burst, in evaluations or reads), a cap on requests in flight, and a fair share of the
// database pool. State is per process and keyed by application id, which only an
// authenticated key yields, so its size is bounded by the applications that exist.
import type { Config } from '../config.js';
import { ProblemError } from './problem.js';

/** The name of the quota policy in the RateLimit and RateLimit-Policy headers. */
const POLICY = 'app';

interface Bucket {
  tokens: number;
  at: number;
}

export interface RateDecision {
  allowed: boolean;
  /** Header values (IETF draft "RateLimit header fields for HTTP", structured-field form). */
  headers: Record<string, string>;
  retryAfterSeconds: number;
}

export interface Limits {
  /** Takes `cost` units from the application's bucket, or refuses without taking any. */
  take(applicationId: string, cost: number): RateDecision;
  /** Counts a request in flight; returns its release, or undefined when the application is at its cap. */
  enter(applicationId: string): (() => void) | undefined;
  /** Runs database work within the application's share of the pool; waits (in-process) for a free slot. */
  withConnection<T>(applicationId: string, work: () => Promise<T>): Promise<T>;
}

export function createLimits(config: Config['api'], now: () => number = () => performance.now()): Limits {
  const rate = config.ratePerSecond;
  const burst = config.rateBurst;
  const share = config.poolSharePerApp > 0 ? config.poolSharePerApp : Math.max(1, Math.floor(config.poolSize / 4));
  const policy = `"${POLICY}";q=${burst};w=${Math.ceil(burst / rate)}`;
  const buckets = new Map<string, Bucket>();
  const inFlight = new Map<string, number>();
  const slots = new Map<string, { busy: number; waiting: (() => void)[] }>();

  function refill(applicationId: string): Bucket {
    const t = now();
    const bucket = buckets.get(applicationId) ?? { tokens: burst, at: t };
    bucket.tokens = Math.min(burst, bucket.tokens + ((t - bucket.at) / 1000) * rate);
    bucket.at = t;
    buckets.set(applicationId, bucket);
    return bucket;
  }

  return {
    take(applicationId, cost) {
      const bucket = refill(applicationId);
      // A request larger than the burst could never pass: it waits for a full bucket instead.
      const needed = Math.min(cost, burst);
      const allowed = bucket.tokens >= needed;
      if (allowed) bucket.tokens -= needed;
      const remaining = Math.floor(bucket.tokens);
      const resetSeconds = allowed ? Math.ceil((burst - bucket.tokens) / rate) : Math.max(1, Math.ceil((needed - bucket.tokens) / rate));
      return {
        allowed,
        retryAfterSeconds: resetSeconds,
        headers: { 'ratelimit-policy': policy, ratelimit: `"${POLICY}";r=${remaining};t=${resetSeconds}` },
      };
    },
    enter(applicationId) {
      const current = inFlight.get(applicationId) ?? 0;
      if (current >= config.concurrencyPerApp) return undefined;
      inFlight.set(applicationId, current + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (inFlight.get(applicationId) ?? 1) - 1;
        if (left === 0) inFlight.delete(applicationId);
        else inFlight.set(applicationId, left);
      };
    },
    async withConnection(applicationId, work) {
      let slot = slots.get(applicationId);
      if (!slot) slots.set(applicationId, (slot = { busy: 0, waiting: [] }));
      if (slot.busy >= share) await new Promise<void>((resolve) => slot?.waiting.push(resolve));
      else slot.busy++;
      try {
        return await work();
      } finally {
        // Hand the slot straight to the next waiter, or give it back.
        const next = slot.waiting.shift();
        if (next) next();
        else if (--slot.busy === 0) slots.delete(applicationId);
      }
    },
  };
}

export function tooManyRequests(detail: string, retryAfterSeconds: number, headers: Record<string, string> = {}): ProblemError {
  return new ProblemError(429, detail, { headers: { ...headers, 'retry-after': String(retryAfterSeconds) } });
}
