// Judge metrics (prom-client, injected Registry, base units, low-cardinality labels), fed by
// the judge's lifecycle events: request duration by endpoint and outcome, tokens and cost by
// model, cache lookups, retries by class, circuit state and the current concurrency limit.
import type { Gauge, Registry } from 'prom-client';
import { metricsIn } from '../../src/metrics.js';
import type { JudgeEventEmitter } from './events.js';

export const CIRCUIT_STATE_VALUE = { closed: 0, half_open: 1, open: 2 } as const;

export function registerJudgeMetrics(registry: Registry, events: JudgeEventEmitter): void {
  const metric = metricsIn(registry);
  const duration = metric.histogram(
    'evalbox_judge_request_duration_seconds',
    'Judge HTTP requests by endpoint and outcome (a re-ask or a format fallback is a request of its own).',
    [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60],
    ['endpoint', 'outcome'],
  );
  const tokens = metric.counter('evalbox_judge_tokens_total', 'Tokens billed by the judge, by model and kind (input/output).', ['model', 'kind']);
  const cost = metric.counter('evalbox_judge_cost_usd_total', 'Judge spend in USD by model (models without a price are not counted).', ['model']);
  const cache = metric.counter('evalbox_judge_cache_lookups_total', 'Judge cache lookups by dimension and result (hit, miss, shared in-process).', [
    'dimension',
    'result',
  ]);
  const cacheHits = metric.counter('evalbox_judge_cache_hits_total', 'Judge calls avoided: stored verdicts and shared in-process results.', ['dimension']);
  const cacheErrors = metric.counter('evalbox_judge_cache_errors_total', 'Judge cache writes that failed (the verdict stood).');
  const retries = metric.counter(
    'evalbox_judge_retries_total',
    'Retries by class: re-asks and format fallbacks made inside a call, and retryable failures handed to the consumer.',
    ['endpoint', 'class'],
  );
  const circuit = metric.gauge('evalbox_judge_circuit_state', 'Circuit state per endpoint: 0 closed, 1 half-open, 2 open.', ['endpoint']);
  const limit = metric.gauge('evalbox_judge_concurrency_limit', 'Current adaptive (AIMD) concurrency limit per endpoint.', ['endpoint']);
  const throttled = metric.gauge('evalbox_judge_throttled', '1 while the endpoint is held after a 429 (Retry-After).', ['endpoint']);

  events.on('judge:request', (e) => {
    duration.observe({ endpoint: e.endpoint, outcome: e.outcome }, e.durationMs / 1000);
    if (e.inputTokens > 0) tokens.inc({ model: e.model, kind: 'input' }, e.inputTokens);
    if (e.outputTokens > 0) tokens.inc({ model: e.model, kind: 'output' }, e.outputTokens);
    if (e.costUsd !== null && e.costUsd > 0) cost.inc({ model: e.model }, e.costUsd);
  });
  events.on('judge:cache', ({ dimension, result }) => {
    cache.inc({ dimension, result });
    if (result !== 'miss') cacheHits.inc({ dimension });
  });
  events.on('judge:cacheError', () => cacheErrors.inc());
  events.on('judge:retry', (e) => retries.inc({ endpoint: e.endpoint, class: e.class }));
  events.on('judge:circuitOpened', ({ endpoint }) => circuit.set({ endpoint }, CIRCUIT_STATE_VALUE.open));
  events.on('judge:circuitHalfOpen', ({ endpoint }) => circuit.set({ endpoint }, CIRCUIT_STATE_VALUE.half_open));
  events.on('judge:circuitClosed', ({ endpoint }) => circuit.set({ endpoint }, CIRCUIT_STATE_VALUE.closed));
  events.on('judge:limitChanged', (e) => limit.set({ endpoint: e.endpoint }, e.limit));
  events.on('judge:throttled', (e) => {
    throttled.set({ endpoint: e.endpoint }, 1);
    limit.set({ endpoint: e.endpoint }, e.limit);
  });
  events.on('judge:unthrottled', ({ endpoint }) => throttled.set({ endpoint }, 0));
}

/** Sets the gauges' starting values (closed circuit, configured limit) so they exist before any event. */
export function initJudgeGauges(registry: Registry, endpoints: { endpoint: string; limit: number }[]): void {
  const circuit = registry.getSingleMetric('evalbox_judge_circuit_state') as Gauge | undefined;
  const limit = registry.getSingleMetric('evalbox_judge_concurrency_limit') as Gauge | undefined;
  const throttled = registry.getSingleMetric('evalbox_judge_throttled') as Gauge | undefined;
  for (const e of endpoints) {
    circuit?.set({ endpoint: e.endpoint }, CIRCUIT_STATE_VALUE.closed);
    limit?.set({ endpoint: e.endpoint }, e.limit);
    throttled?.set({ endpoint: e.endpoint }, 0);
  }
}
