// Relay metrics (base units, low-cardinality labels), fed by the relay's lifecycle events and a
// periodic backlog query. Relays that lead a shard report the backlog (each the whole outbox's):
// aggregate with max.
import type { EventEmitter } from 'node:events';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Db } from '../src/db/index.js';
import { runInspection, type BacklogRow } from '../src/inspect.js';
import type { RelayEvents } from './relay.js';

export function registerRelayMetrics(registry: Registry, events: EventEmitter<RelayEvents>, db: Db): { refreshBacklog(): Promise<void>; clearBacklog(): void } {
  const registers = [registry];
  const backlog = new Gauge({ name: 'evalbox_outbox_backlog_events', help: 'Outbox events not yet published, per topic.', labelNames: ['topic'], registers });
  const oldest = new Gauge({
    name: 'evalbox_outbox_oldest_pending_age_seconds',
    help: 'Age of the oldest unpublished outbox event, per topic.',
    labelNames: ['topic'],
    registers,
  });
  const latency = new Histogram({
    name: 'evalbox_relay_publish_latency_seconds',
    help: 'From the outbox row being written to its Kafka delivery acknowledgement.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const batchSize = new Histogram({
    name: 'evalbox_relay_batch_size_events',
    help: 'Events per published batch.',
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
    registers,
  });
  const published = new Counter({ name: 'evalbox_relay_published_events_total', help: 'Events published and acknowledged.', registers });
  const produceErrors = new Counter({
    name: 'evalbox_relay_produce_errors_total',
    help: 'Produce failures by error code and class.',
    labelNames: ['code', 'retryable'],
    registers,
  });
  const parked = new Counter({
    name: 'evalbox_relay_parked_events_total',
    help: 'Rows parked for a permanent error, by code.',
    labelNames: ['code'],
    registers,
  });
  const leader = new Gauge({ name: 'evalbox_relay_shard_leader', help: '1 while this relay leads the shard.', labelNames: ['shard'], registers });
  const epoch = new Gauge({ name: 'evalbox_relay_shard_epoch', help: 'Lease epoch of the shard this relay leads.', labelNames: ['shard'], registers });
  const blocked = new Gauge({
    name: 'evalbox_relay_horizon_blocked_seconds',
    help: 'How long committed rows have waited behind an older open transaction.',
    labelNames: ['shard'],
    registers,
  });
  const blocker = new Gauge({
    name: 'evalbox_relay_horizon_blocker_age_seconds',
    help: 'Transaction age of the backend holding the horizon back (pid and query prefix as labels).',
    labelNames: ['pid', 'query'],
    registers,
  });
  const errors = new Counter({ name: 'evalbox_relay_errors_total', help: 'Internal errors by where they happened.', labelNames: ['where'], registers });
  const partitionsDropped = new Counter({ name: 'evalbox_outbox_partitions_dropped_total', help: 'Outbox partitions dropped by retention.', registers });

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
