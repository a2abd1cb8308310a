// The relay: owns shards through leases and, for each owned shard, moves outbox rows to Kafka in
// (xid, seq) order: read below the horizon, publish, await every delivery report, then advance
// the cursor (fenced by the lease epoch). Lifecycle events feed metrics and logs; the loop itself
// has no metrics code.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { sql } from 'kysely';
import type { Db } from '../src/db/index.js';
import { coerceError, ConfigError, type EvalboxError } from '../src/errors.js';
import { findHorizonBlocker, type HorizonBlocker } from '../src/inspect.js';
import type { Logger } from '../src/logging.js';
import { isFatalKafkaError, type BatchProducer } from '../src/kafka.js';
import { fullJitterDelay, sleep } from '../src/retry.js';
import { advanceCursor, claimLease, releaseLease, renewLease, type Lease, type ParkedRow } from './lease.js';
import { maintainPartitions } from './partitions.js';
import { publishRows } from './publisher.js';
import { horizonBlockedSeconds, readBatchBelowHorizon, type OutboxRow } from './reader.js';
import { listenForNudges, type NudgeListener } from './wakeup.js';

export interface RelaySettings {
  batchSize: number;
  wakeup: 'notify' | 'poll';
  pollMinMs: number;
  pollMaxMs: number;
  leaseTtlMs: number;
  heartbeatMs: number;
  retentionHours: number;
  partitionsAhead: number;
  /** Most shards one relay leads at once (spreads shards over relays). */
  maxShards: number;
  /** Horizon-blocked time after which the blocker is reported. */
  horizonReportAfterMs: number;
  partitionMaintenanceMs: number;
}

export interface RelayEvents {
  'relay:leaseAcquired': [{ shard: number; epoch: string }];
  'relay:leaseLost': [{ shard: number; epoch: string; reason: 'renew-failed' | 'fenced' }];
  'relay:leaseReleased': [{ shard: number; epoch: string }];
  'relay:batchPublished': [{ shard: number; rows: number; parked: number; publishLatencies: number[] }];
  'relay:rowParked': [{ shard: number; seq: string; id: string; topic: string; code: string; message: string }];
  'relay:produceError': [{ shard: number; code: string; retryable: boolean; message: string }];
  'relay:batchRetry': [{ shard: number; attempt: number; delayMs: number; code: string }];
  'relay:horizonBlocked': [{ shard: number; seconds: number; blocker: HorizonBlocker | undefined }];
  'relay:partitions': [{ created: string[]; dropped: string[]; kept: string[]; failed: { partition: string; error: string }[] }];
  'relay:error': [{ where: string; error: Error }];
}

export interface RelayContext {
  db: Db;
  /** For the dedicated LISTEN connection. */
  databaseUrl: string;
  createProducer: () => BatchProducer;
  settings: RelaySettings;
  logger: Logger;
  events?: EventEmitter<RelayEvents>;
  instanceId?: string;
}

export interface Relay {
  instanceId: string;
  events: EventEmitter<RelayEvents>;
  start(): Promise<void>;
  /** Graceful stop: finish in-flight batches, flush, release leases. */
  stop(): Promise<void>;
  ownedShards(): number[];
}

interface ShardWorker {
  lease: Lease;
  cursor: { xid: string; seq: string };
  lost: boolean;
  wake: () => void;
  done: Promise<void>;
}

export function createRelay(ctx: RelayContext): Relay {
  const { db, settings, logger } = ctx;
  const events = ctx.events ?? new EventEmitter<RelayEvents>();
  const instanceId = ctx.instanceId ?? `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const workers = new Map<number, ShardWorker>();
  const stopController = new AbortController();
  let producer: BatchProducer | undefined;
  let listener: NudgeListener | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let housekeeping: NodeJS.Timeout | undefined;
  let partitionTimer: NodeJS.Timeout | undefined;
  let heartbeatRunning: Promise<void> = Promise.resolve();
  const blockedSince = new Map<number, number>();
  let lastBlockerReport = 0;

  const reportError = (where: string, error: unknown): void => {
    events.emit('relay:error', { where, error: coerceError(error) });
  };

  async function getProducer(): Promise<BatchProducer> {
    if (!producer) {
      const created = ctx.createProducer();
      await created.connect();
      producer = created;
    }
    return producer;
  }

  async function replaceProducerIfFatal(errors: EvalboxError[]): Promise<void> {
    if (!errors.some(isFatalKafkaError)) return;
    logger.warn('the producer reported a fatal error; replacing it');
    const old = producer;
    producer = undefined;
    await old?.disconnect().catch(() => {});
  }

  async function shardCount(): Promise<number> {
    const row = await db.selectFrom('outbox_settings').select('shards').executeTakeFirstOrThrow();
    return row.shards;
  }

  async function runShard(worker: ShardWorker): Promise<void> {
    const { shard } = worker.lease;
    let idleMs = settings.pollMinMs;
    let attempt = 0;
    const nudge = { pending: false, resolve: undefined as (() => void) | undefined };
    worker.wake = () => {
      nudge.pending = true;
      nudge.resolve?.();
    };
    const waitForWork = (ms: number) =>
      new Promise<void>((resolve) => {
        if (nudge.pending || stopController.signal.aborted) return resolve();
        const timer = setTimeout(done, ms);
        function done() {
          clearTimeout(timer);
          nudge.resolve = undefined;
          stopController.signal.removeEventListener('abort', done);
          resolve();
        }
        nudge.resolve = done;
        stopController.signal.addEventListener('abort', done, { once: true });
      });

    // The batch after the one in flight, read while the broker acknowledges (only after a full
    // batch, the sign that more rows wait); dropped unless the whole batch went through.
    let prefetched: Promise<OutboxRow[]> | undefined;
    while (!stopController.signal.aborted && !worker.lost) {
      nudge.pending = false;
      try {
        const next = prefetched;
        prefetched = undefined;
        const rows = await (next ?? readBatchBelowHorizon(db, shard, worker.cursor, settings.batchSize));
        if (rows.length === 0) {
          await waitForWork(idleMs);
          // After a nudge, look again soon; while idle, back off to the poll ceiling.
          idleMs = nudge.pending ? settings.pollMinMs : Math.min(settings.pollMaxMs, idleMs * 2);
          continue;
        }
        idleMs = settings.pollMinMs;
        const publishing = publishRows(await getProducer(), rows);
        const lastRead = rows[rows.length - 1] as OutboxRow;
        const readAhead =
          rows.length === settings.batchSize ? readBatchBelowHorizon(db, shard, { xid: lastRead.xid, seq: lastRead.seq }, settings.batchSize) : undefined;
        readAhead?.catch(() => {}); // a failure surfaces when it is awaited, if it is used at all
        const outcomes = await publishing;
        // Everything before the first retryable failure is done (acked or parked for good).
        const firstRetry = outcomes.findIndex((o) => !o.ok && o.error.retryable);
        const doneCount = firstRetry === -1 ? rows.length : firstRetry;
        const parked: ParkedRow[] = [];
        const latencies: number[] = [];
        for (let i = 0; i < doneCount; i++) {
          const outcome = outcomes[i];
          const row = rows[i];
          if (!outcome || !row) continue;
          if (outcome.ok) latencies.push((outcome.ackedAt - row.created_at.getTime()) / 1000);
          else parked.push({ seq: row.seq, errorCode: outcome.error.code, errorMessage: outcome.error.message });
        }
        if (doneCount > 0) {
          const last = rows[doneCount - 1] as (typeof rows)[number];
          const advanced = await advanceCursor(db, worker.lease, { xid: last.xid, seq: last.seq }, parked);
          if (!advanced) {
            worker.lost = true;
            events.emit('relay:leaseLost', { shard, epoch: worker.lease.epoch, reason: 'fenced' });
            break;
          }
          worker.cursor = { xid: last.xid, seq: last.seq };
          for (const p of parked) {
            const row = rows.find((r) => r.seq === p.seq);
            events.emit('relay:rowParked', { shard, seq: p.seq, id: row?.id ?? '', topic: row?.topic ?? '', code: p.errorCode, message: p.errorMessage });
          }
          events.emit('relay:batchPublished', { shard, rows: doneCount - parked.length, parked: parked.length, publishLatencies: latencies });
        }
        const failures = outcomes.filter((o): o is { ok: false; error: EvalboxError } => !o.ok).map((o) => o.error);
        for (const error of failures) events.emit('relay:produceError', { shard, code: error.code, retryable: error.retryable, message: error.message });
        await replaceProducerIfFatal(failures);
        if (firstRetry === -1) {
          attempt = 0;
          prefetched = readAhead;
          continue;
        }
        // Retry the rest of the batch from the new cursor after a jittered backoff; nothing is skipped.
        // A batch that got partly through is progress (e.g. a full local queue), not an outage:
        // the backoff starts over instead of growing.
        attempt = doneCount > 0 ? 1 : attempt + 1;
        const delayMs = fullJitterDelay({ baseMs: 100, maxMs: 5_000 }, attempt);
        events.emit('relay:batchRetry', { shard, attempt, delayMs, code: (outcomes[firstRetry] as { error: EvalboxError }).error.code });
        await sleep(delayMs, stopController.signal);
      } catch (error) {
        // Database trouble: back off and read again from the cursor.
        attempt++;
        reportError(`shard ${shard}`, error);
        await sleep(fullJitterDelay({ baseMs: 200, maxMs: 5_000 }, attempt), stopController.signal);
      }
    }
  }

  function startWorker(lease: Lease): void {
    const worker: ShardWorker = { lease, cursor: { xid: lease.cursorXid, seq: lease.cursorSeq }, lost: false, wake: () => {}, done: Promise.resolve() };
    workers.set(lease.shard, worker);
    events.emit('relay:leaseAcquired', { shard: lease.shard, epoch: lease.epoch });
    worker.done = runShard(worker)
      .catch((error) => reportError(`shard ${lease.shard}`, error))
      .finally(() => {
        if (workers.get(lease.shard) === worker) workers.delete(lease.shard);
      });
  }

  async function beat(): Promise<void> {
    for (const [shard, worker] of workers) {
      if (worker.lost) continue;
      try {
        if (!(await renewLease(db, worker.lease, settings.leaseTtlMs))) {
          worker.lost = true;
          worker.wake();
          events.emit('relay:leaseLost', { shard, epoch: worker.lease.epoch, reason: 'renew-failed' });
        }
      } catch (error) {
        reportError('lease renewal', error);
      }
    }
    if (stopController.signal.aborted) return;
    try {
      const shards = await shardCount();
      for (let shard = 0; shard < shards && workers.size < settings.maxShards; shard++) {
        if (workers.has(shard) || stopController.signal.aborted) continue;
        const lease = await claimLease(db, shard, instanceId, settings.leaseTtlMs);
        if (lease) startWorker(lease);
      }
    } catch (error) {
      reportError('lease claim', error);
    }
  }

  async function checkHorizon(): Promise<void> {
    for (const [shard, worker] of workers) {
      const seconds = await horizonBlockedSeconds(db, shard, worker.cursor);
      if (seconds * 1000 < settings.horizonReportAfterMs) {
        blockedSince.delete(shard);
        events.emit('relay:horizonBlocked', { shard, seconds: 0, blocker: undefined });
        continue;
      }
      blockedSince.set(shard, seconds);
      const blocker = await findHorizonBlocker(db);
      events.emit('relay:horizonBlocked', { shard, seconds, blocker });
      // The log line is rate-limited; the metric is always current.
      if (Date.now() - lastBlockerReport > 30_000) {
        lastBlockerReport = Date.now();
        logger.warn(
          {
            shard,
            blockedSeconds: seconds,
            blockerPid: blocker?.pid,
            blockerAgeSeconds: blocker?.ageSeconds,
            blockerState: blocker?.state,
            blockerQuery: blocker?.query.slice(0, 120),
          },
          'a long transaction holds the outbox horizon back',
        );
      }
    }
  }

  async function runPartitionMaintenance(): Promise<void> {
    try {
      const outcome = await maintainPartitions(db, { retentionHours: settings.retentionHours, partitionsAhead: settings.partitionsAhead });
      events.emit('relay:partitions', outcome);
    } catch (error) {
      reportError('partition maintenance', error);
    }
  }

  return {
    instanceId,
    events,
    ownedShards: () => [...workers.keys()].sort((a, b) => a - b),
    async start() {
      await getProducer();
      if (settings.wakeup === 'notify') {
        listener = await listenForNudges({
          databaseUrl: ctx.databaseUrl,
          signal: stopController.signal,
          onError: reportError,
          onNudge: (shard) => {
            for (const [owned, worker] of workers) if (shard === undefined || shard === owned) worker.wake();
          },
        });
      }
      await runPartitionMaintenance();
      await beat();
      heartbeat = setInterval(() => {
        heartbeatRunning = heartbeatRunning.then(beat);
      }, settings.heartbeatMs);
      housekeeping = setInterval(() => void checkHorizon().catch((e) => reportError('horizon check', e)), Math.max(1000, settings.horizonReportAfterMs / 2));
      partitionTimer = setInterval(() => void runPartitionMaintenance(), settings.partitionMaintenanceMs);
    },
    async stop() {
      stopController.abort();
      clearInterval(heartbeat);
      clearInterval(housekeeping);
      clearInterval(partitionTimer);
      await heartbeatRunning;
      const running = [...workers.values()];
      for (const w of running) w.wake();
      // Each worker finishes its in-flight batch: the cursor only moves past acknowledged rows.
      await Promise.all(running.map((w) => w.done));
      if (producer) {
        await producer.flush(10_000).catch(() => {});
        await producer.disconnect().catch(() => {});
      }
      for (const w of running) {
        if (!w.lost) {
          await releaseLease(db, w.lease).catch((e) => reportError('lease release', e));
          events.emit('relay:leaseReleased', { shard: w.lease.shard, epoch: w.lease.epoch });
        }
      }
      await listener?.close();
      listener = undefined;
    },
  };
}

/** Sets the shard count, refusing while any shard has unpublished rows (keys would move). */
export async function setShardCount(db: Db, shards: number): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const current = await trx.selectFrom('outbox_settings').select('shards').forUpdate().executeTakeFirstOrThrow();
    if (current.shards === shards) return;
    const pending = await sql<{ one: number }>`
      SELECT 1 AS one FROM outbox o LEFT JOIN relay_leases l ON l.shard = o.shard
      WHERE l.shard IS NULL OR (o.xid, o.seq) > (l.cursor_xid, l.cursor_seq) LIMIT 1`.execute(trx);
    if (pending.rows.length > 0) {
      throw new ConfigError(`cannot change the shard count from ${current.shards} to ${shards} while events are pending: drain the outbox first`);
    }
    await trx.updateTable('outbox_settings').set({ shards }).execute();
  });
}
