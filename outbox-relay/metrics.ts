// Relay metrics (base units, low-cardinality labels), fed by the relay's lifecycle events and a
// periodic backlog query. Relays that lead a shard report the backlog (each the whole outbox's):
// aggregate with max.
import type { EventEmitter } from 'node:events';
import type { Registry } from 'prom-client';
import { metricsIn } from '../src/metrics.js';
import type { Db } from '../src/db/index.js';
import { runInspection, type BacklogRow } from '../src/inspect.js';
import type { RelayEvents } from './relay.js';

export function registerRelayMetrics(registry: Registry, events: EventEmitter<RelayEvents>, db: Db): { refreshBacklog(): Promise<void>; clearBacklog(): void } {
  const metric = metricsIn(registry);
  const backlog = metric.gauge('evalbox_outbox_backlog_events', 'Outbox events not yet published, per topic.', ['topic']);
  const oldest = metric.gauge('evalbox_outbox_oldest_pending_age_seconds', 'Age of the oldest unpublished outbox event, per topic.', ['topic']);
  const latency = metric.histogram(
    'evalbox_relay_publish_latency_seconds',
    'From the outbox row being written to its batch committed on Kafka (visible to read_committed consumers).',
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  );
  const batchSize = metric.histogram('evalbox_relay_batch_size_events', 'Events per published batch.', [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000]);
  const published = metric.counter('evalbox_relay_published_events_total', 'Events published and acknowledged.');
  const produceErrors = metric.counter('evalbox_relay_produce_errors_total', 'Produce failures by error code and class.', ['code', 'retryable']);
  const parked = metric.counter('evalbox_relay_parked_events_total', 'Rows parked for a permanent error, by code.', ['code']);
  const leader = metric.gauge('evalbox_relay_shard_leader', '1 while this relay leads the shard.', ['shard']);
  const epoch = metric.gauge('evalbox_relay_shard_epoch', 'Lease epoch of the shard this relay leads.', ['shard']);
  const blocked = metric.gauge('evalbox_relay_horizon_blocked_seconds', 'How long committed rows have waited behind an older open transaction.', ['shard']);
  const blocker = metric.gauge(
    'evalbox_relay_horizon_blocker_age_seconds',
    'Transaction age of the backend holding the horizon back (pid and query prefix as labels).',
    ['pid', 'query'],
  );
  const errors = metric.counter('evalbox_relay_errors_total', 'Internal errors by where they happened.', ['where']);
  const partitionsDropped = metric.counter('evalbox_outbox_partitions_dropped_total', 'Outbox partitions dropped by retention.');

  events.on('relay:leaseAcquired', ({ shard, epoch: e }) => {
    leader.set({ shard: String(shard) }, 1);
    epoch.set({ shard: String(shard) }, Number(e));
  });
  const notLeading = ({ shard }: { shard: number }) => leader.set({ shard: String(shard) }, 0);
  events.on('relay:leaseLost', notLeading);
  events.on('relay:leaseReleased', notLeading);
  events.on('relay:batchPublished', ({ rows, parked: p, publishLatencies }) => {
    batchSize.observe(rows + p);
    published.inc(rows);
    for (const seconds of publishLatencies) latency.observe(Math.max(0, seconds));
  });
  events.on('relay:rowParked', ({ code }) => parked.inc({ code }));
  events.on('relay:produceError', ({ code, retryable }) => produceErrors.inc({ code, retryable: String(retryable) }));
  events.on('relay:horizonBlocked', ({ shard, seconds, blocker: b }) => {
    blocked.set({ shard: String(shard) }, seconds);
    blocker.reset();
    if (b) blocker.set({ pid: String(b.pid), query: b.query.slice(0, 60) }, b.ageSeconds);
  });
  events.on('relay:error', ({ where }) => errors.inc({ where: where.replace(/\d+/g, 'N') }));
  events.on('relay:partitions', ({ dropped }) => partitionsDropped.inc(dropped.length));

  return {
    clearBacklog() {
      backlog.reset();
      oldest.reset();
    },
    async refreshBacklog() {
      const rows = await runInspection<BacklogRow>(db, 'backlog');
      backlog.reset();
      oldest.reset();
      for (const row of rows) {
        backlog.set({ topic: row.topic }, Number(row.pending));
        oldest.set({ topic: row.topic }, row.oldest_age_seconds);
      }
    },
  };
}

/** Log lines for the events an operator should see. */
export function logRelayEvents(events: EventEmitter<RelayEvents>, logger: import('../src/logging.js').Logger): void {
  events.on('relay:leaseAcquired', (e) => logger.info(e, 'leading shard'));
  events.on('relay:leaseLost', (e) => logger.warn(e, 'lost shard lease'));
  events.on('relay:leaseReleased', (e) => logger.info(e, 'released shard lease'));
  events.on('relay:rowParked', (e) => logger.error(e, 'parked an outbox row that cannot be published'));
  events.on('relay:batchRetry', (e) => logger.warn(e, 'retrying batch'));
  events.on('relay:partitions', (e) => {
    if (e.created.length || e.dropped.length || e.failed.length) logger.info(e, 'outbox partitions maintained');
  });
  events.on('relay:error', ({ where, error }) => logger.error({ where, err: error }, 'relay error'));
}
