// Scorer metrics: consumer lag per group/topic/partition (offset lag and time lag), processing
// duration by dimension, retries, DLT records, in-flight work and paused partitions. Fed by the
// runtime's and the scorer's lifecycle events and a periodic watermark query.
import type { EventEmitter } from 'node:events';
import type { Registry } from 'prom-client';
import { metricsIn } from '../src/metrics.js';
import type { KeyParallelConsumer, RuntimeEvents } from './runtime.js';
import type { ScorerEvents } from './scorer.js';

export function registerScorerMetrics(
  registry: Registry,
  groupId: string,
  consumer: KeyParallelConsumer,
  scorerEvents: EventEmitter<ScorerEvents>,
  runtimeEvents: EventEmitter<RuntimeEvents>,
): { refreshLag(): Promise<void> } {
  const metric = metricsIn(registry);
  const offsetLag = metric.gauge('evalbox_consumer_lag_messages', 'Messages not yet processed: high watermark minus the next offset to process.', [
    'group',
    'topic',
    'partition',
  ]);
  const timeLag = metric.gauge('evalbox_consumer_lag_seconds', 'Age of the oldest message that is fetched but not yet processed (0 when none).', [
    'group',
    'topic',
    'partition',
  ]);
  const duration = metric.histogram(
    'evalbox_scorer_dimension_duration_seconds',
    'Scoring time per dimension.',
    [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 15, 60],
    ['dimension', 'status'],
  );
  const evaluations = metric.counter('evalbox_scorer_evaluations_total', 'Evaluations brought to a terminal status.', ['status']);
  const retries = metric.counter('evalbox_scorer_retries_total', 'Scorer retries by dimension, error code and whether it was provider back-pressure.', [
    'dimension',
    'code',
    'pressure',
  ]);
  const dlt = metric.counter('evalbox_scorer_dlt_records_total', 'Dead-letter records by reason.', ['reason']);
  const redeliveries = metric.counter('evalbox_scorer_redeliveries_total', 'Events for evaluations that were already terminal (no effect).');
  const handlerFailures = metric.counter(
    'evalbox_consumer_handler_failures_total',
    'Handler attempts that failed and will be retried (infrastructure trouble).',
  );
  metric.sampled('evalbox_consumer_in_flight', 'Messages fetched and not yet processed.', () => consumer.inFlight());
  metric.sampled(
    'evalbox_consumer_paused_partitions',
    'Partitions paused for back-pressure.',
    () => [...consumer.progress().values()].filter((p) => p.paused).length,
  );

  scorerEvents.on('scorer:dimensionScored', ({ dimension, status, seconds, reused }) => {
    if (!reused) duration.observe({ dimension, status }, seconds);
  });
  scorerEvents.on('scorer:evaluationScored', ({ status }) => evaluations.inc({ status }));
  scorerEvents.on('scorer:retry', ({ dimension, code, pressure }) => retries.inc({ dimension, code, pressure: String(pressure) }));
  scorerEvents.on('scorer:deadLettered', ({ reason }) => dlt.inc({ reason }));
  scorerEvents.on('scorer:redelivery', () => redeliveries.inc());
  runtimeEvents.on('consumer:handlerFailed', () => handlerFailures.inc());

  return {
    async refreshLag() {
      offsetLag.reset();
      timeLag.reset();
      for (const w of await consumer.watermarks()) {
        const labels = { group: groupId, topic: w.topic, partition: String(w.partition) };
        const next = w.lastSeen === undefined ? w.committed : w.lastSeen + 1;
        if (Number.isFinite(w.high) && next !== undefined)
          offsetLag.set(labels, Math.max(0, w.high - next) + (consumer.progress().get(`${w.topic}|${w.partition}`)?.inFlight() ?? 0));
        timeLag.set(labels, w.oldestPendingTimestamp === undefined ? 0 : Math.max(0, (Date.now() - w.oldestPendingTimestamp) / 1000));
      }
    },
  };
}
