// The judge's typed lifecycle events. Metrics, logs and the consumer runtime (which pauses
// consumption while an endpoint is throttled or its circuit is open) subscribe to them, so the
// judge itself carries no metrics or pause logic.
import { EventEmitter } from 'node:events';
import type { ErrorRetryClass } from '../../src/errors.js';

/** How one judge request ended, as a low-cardinality metric label. */
export type RequestOutcome =
  | 'ok'
  | 'unparseable'
  | 'refused'
  | 'rate_limited'
  | 'server_error'
  | 'timeout'
  | 'connection_error'
  | 'client_error'
  | 'response_format_rejected'
  | 'bad_response'
  | 'aborted';

/** Why the judge asked for (or made) a retry: an error's class (src/errors.ts), or a re-ask or format fallback. */
export type RetryClass = ErrorRetryClass | 'reask' | 'response_format_fallback';

export interface JudgeEvents {
  /** One HTTP request to an endpoint (a re-ask or a fallback is a request of its own). */
  'judge:request': [
    {
      endpoint: string;
      model: string;
      dimension: string;
      outcome: RequestOutcome;
      status: number | null;
      durationMs: number;
      inputTokens: number;
      outputTokens: number;
      costUsd: number | null;
    },
  ];
  /** A cache lookup: `hit` for a stored result, `shared` when another in-process caller's result was reused. */
  'judge:cache': [{ dimension: string; result: 'hit' | 'miss' | 'shared' }];
  /** The cache could not store or release (the database is down); the verdict itself stands. */
  'judge:cacheError': [{ dimension: string; error: Error }];
  'judge:retry': [{ endpoint: string; dimension: string; class: RetryClass }];
  'judge:circuitOpened': [{ endpoint: string; retryAfterMs: number; failureRate: number; calls: number }];
  'judge:circuitHalfOpen': [{ endpoint: string }];
  'judge:circuitClosed': [{ endpoint: string }];
  /** A 429: the endpoint is held until `until` (epoch ms). */
  'judge:throttled': [{ endpoint: string; until: number; retryAfterMs: number; limit: number }];
  'judge:unthrottled': [{ endpoint: string }];
  'judge:limitChanged': [{ endpoint: string; limit: number; inFlight: number }];
}

export type JudgeEventEmitter = EventEmitter<JudgeEvents>;

export function createJudgeEvents(): JudgeEventEmitter {
  return new EventEmitter<JudgeEvents>();
}
