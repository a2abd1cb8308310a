// The relay: owns shards through leases and runs one worker per owned shard (shard-worker.ts),
// beside the lease heartbeat (heartbeat.ts) and housekeeping (housekeeping.ts). Lifecycle events
// feed metrics and logs; the workers themselves have no metrics code.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { loadConfig, type Config } from '../src/config.js';
import type { Db } from '../src/db/index.js';
import { coerceError, isLockNotAvailable } from '../src/errors.js';
import { withRetry, type BackoffPolicy } from '../src/retry.js';
import type { HorizonBlocker } from '../src/inspect.js';
import type { TransactionalProducer } from '../src/kafka.js';
import type { Logger } from '../src/logging.js';
import { claimFreeShards, renewLeases, type HeartbeatContext } from './heartbeat.js';
import { createHorizonCheck, runPartitionMaintenance, type HousekeepingContext } from './housekeeping.js';
import { startShardWorker, type LeaseLossReason, type ShardWorker } from './shard-worker.js';
import { releaseLease, reshard, type Lease } from './sql.js';
import { listenWakeups, type WakeupSource } from './wakeup.js';

type RelayConfig = Config['relay'];
/** Settings with a default from the typed configuration when a caller leaves them out. */
type DefaultedSetting = 'batchBytes' | 'retryBaseMs' | 'retryMaxMs' | 'unknownTopicParkMs';

/** The relay section of the typed configuration, less what only the command uses, plus housekeeping periods. */
export type ResolvedRelaySettings = Omit<RelayConfig, 'transactionalIdPrefix' | 'topicPartitions' | 'statementTimeoutMs'> & {
  /** Horizon-blocked time after which the blocker is reported. */
  horizonReportAfterMs: number;
  partitionMaintenanceMs: number;
};
export type RelaySettings = Omit<ResolvedRelaySettings, DefaultedSetting> & Partial<Pick<ResolvedRelaySettings, DefaultedSetting>>;

export function resolveRelaySettings(settings: RelaySettings): ResolvedRelaySettings {
  const { batchBytes, retryBaseMs, retryMaxMs, unknownTopicParkMs } = loadConfig({}).relay;
  return { batchBytes, retryBaseMs, retryMaxMs, unknownTopicParkMs, ...settings };
}

export interface RelayEvents {
  'relay:leaseAcquired': [{ shard: number; epoch: string }];
  'relay:leaseLost': [{ shard: number; epoch: string; reason: LeaseLossReason }];
  'relay:leaseReleased': [{ shard: number; epoch: string }];
  /** A batch was read and is about to be sent (again, after a failed attempt). */
  'relay:batchSending': [{ shard: number; rows: number; attempt: number }];
  /**
   * A batch's cursor moved: `publishedIds[i]` was in the Kafka transaction whose commit returned at
   * `kafkaCommittedAt` (epoch ms; undefined when nothing was sent), `publishLatencies[i]` seconds after its
   * row was written. read_committed consumers see the rows once the broker has written the
   * transaction's markers, just after.
   */
  'relay:batchPublished': [
    { shard: number; rows: number; parked: number; publishLatencies: number[]; publishedIds: string[]; kafkaCommittedAt: number | undefined },
  ];
  'relay:rowParked': [{ shard: number; seq: string; id: string; topic: string; code: string; message: string; traceId?: string }];
  'relay:produceError': [{ shard: number; code: string; retryable: boolean; message: string }];
  'relay:batchRetry': [{ shard: number; attempt: number; delayMs: number; code: string }];
  'relay:horizonBlocked': [{ shard: number; seconds: number; blocker: HorizonBlocker | undefined }];
  'relay:partitions': [{ created: string[]; dropped: string[]; kept: string[]; failed: { partition: string; error: string }[] }];
  'relay:error': [{ where: string; error: Error }];
}

export interface RelayContext {
  db: Db;
  /** For the LISTEN connection of the default wake-up source. */
  databaseUrl: string;
  /** A transactional producer for one shard; its transactional.id must be derived from the shard. */
  createProducer: (shard: number) => TransactionalProducer;
  settings: RelaySettings;
  logger: Logger;
  events?: EventEmitter<RelayEvents>;
  instanceId?: string;
  /** Nudges idle workers; default: LISTEN in notify mode, none in poll mode. */
  wakeups?: WakeupSource;
}

export interface Relay {
  instanceId: string;
  events: EventEmitter<RelayEvents>;
  start(): Promise<void>;
  /**
   * Graceful stop: finish the in-flight batches (for at most the lease TTL, renewing the leases
   * meanwhile), then release the leases. A batch that could not finish is aborted, never half
   * committed; the next owner sends it again.
   */
  stop(): Promise<void>;
  ownedShards(): number[];
}

export function createRelay(ctx: RelayContext): Relay {
  const { db, logger } = ctx;
  const settings = resolveRelaySettings(ctx.settings);
  const events = ctx.events ?? new EventEmitter<RelayEvents>();
  const instanceId = ctx.instanceId ?? `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const workers = new Map<number, ShardWorker>();
  const stopping = new AbortController();
  const wakeups = ctx.wakeups ?? (settings.wakeup === 'notify' ? listenWakeups(ctx.databaseUrl) : undefined);
  const timers: NodeJS.Timeout[] = [];
  const retiring = new Set<number>();
  let heartbeatRunning: Promise<void> = Promise.resolve();

  guardListeners(events, logger);

  const reportError = (where: string, error: unknown): void => {
    events.emit('relay:error', { where, error: coerceError(error) });
  };

  function startWorker(lease: Lease, sentAt: number): void {
    const worker = startShardWorker({ db, settings, events, createProducer: ctx.createProducer, stopping: stopping.signal }, lease, sentAt);
    workers.set(lease.shard, worker);
    events.emit('relay:leaseAcquired', { shard: lease.shard, epoch: lease.epoch });
    void worker.done.finally(() => {
      // A worker that lost its lease leaves; one that stopped stays until its lease is released.
      if (worker.lost() && workers.get(lease.shard) === worker) workers.delete(lease.shard);
    });
  }

  // A shard whose generation is drained has nothing left to publish: its worker leaves.
  function retireWorker(shard: number): void {
    const worker = workers.get(shard);
    if (!worker || retiring.has(shard)) return;
    retiring.add(shard);
    worker.giveUp();
    void worker.done
      .then(async () => {
        if (!worker.lost()) await releaseLease(db, worker.lease);
        events.emit('relay:leaseReleased', { shard, epoch: worker.lease.epoch });
      })
      .catch((e) => reportError('lease release', e))
      .finally(() => {
        retiring.delete(shard);
        if (workers.get(shard) === worker) workers.delete(shard);
      });
  }

  const heartbeat: HeartbeatContext = {
    db,
    events,
    instanceId,
    leaseTtlMs: settings.leaseTtlMs,
    maxShards: settings.maxShards,
    workers,
    startWorker,
    retireWorker,
  };
  const housekeeping: HousekeepingContext = {
    db,
    events,
    logger,
    workers,
    horizonReportAfterMs: settings.horizonReportAfterMs,
    retentionHours: settings.retentionHours,
    partitionsAhead: settings.partitionsAhead,
  };
  const beat = async () => {
    await renewLeases(heartbeat);
    if (!stopping.signal.aborted) await claimFreeShards(heartbeat);
  };
  // One beat at a time: a period that ends while a beat still runs (a renewal waiting on a lock,
  // a slow database) is skipped, not queued; queued beats would run back to back once the wait
  // ends, and stop() would wait for all of them. A beat that throws is reported, and the next
  // period beats again.
  let beating = false;
  const nextBeat = () => {
    if (beating) return;
    beating = true;
    heartbeatRunning = beat()
      .catch((error: unknown) => reportError('heartbeat', error))
      .finally(() => (beating = false));
  };
  const every = (ms: number, task: () => Promise<void>) => timers.push(setInterval(() => void task().catch((e) => reportError('housekeeping', e)), ms));

  return {
    instanceId,
    events,
    ownedShards: () =>
      [...workers.entries()]
        .filter(([, w]) => !w.lost())
        .map(([shard]) => shard)
        .sort((a, b) => a - b),
    async start() {
      await wakeups?.start((shard) => {
        if (shard === undefined) for (const worker of workers.values()) worker.wake();
        else workers.get(shard)?.wake();
      }, reportError);
      await beat();
      timers.push(setInterval(nextBeat, settings.heartbeatMs));
      // Partition DDL can wait on locks: it runs beside the workers, never before the first claim.
      const partitions = () => runPartitionMaintenance(housekeeping);
      timers.push(setTimeout(() => void partitions(), 0));
      every(settings.partitionMaintenanceMs, partitions);
      every(Math.max(1000, settings.horizonReportAfterMs / 2), createHorizonCheck(housekeeping));
    },
    async stop() {
      stopping.abort();
      await wakeups?.stop();
      const running = [...workers.values()];
      for (const w of running) w.wake();
      // The heartbeat keeps renewing while the workers drain, for at most one lease TTL.
      let drainTimer: NodeJS.Timeout | undefined;
      const drained = await Promise.race([
        Promise.all(running.map((w) => w.done)).then(() => true),
        new Promise<false>((resolve) => (drainTimer = setTimeout(() => resolve(false), settings.leaseTtlMs))),
      ]);
      clearTimeout(drainTimer);
      if (!drained) {
        logger.warn({ drainMs: settings.leaseTtlMs }, 'in-flight batches did not finish in time; they are aborted and sent again by the next owner');
        for (const w of running) w.giveUp();
      }
      for (const timer of timers) clearInterval(timer);
      await heartbeatRunning;
      for (const w of running) {
        if (w.lost()) continue;
        await releaseLease(db, w.lease).catch((e) => reportError('lease release', e));
        events.emit('relay:leaseReleased', { shard: w.lease.shard, epoch: w.lease.epoch });
      }
      workers.clear();
      // Without waiting for the producers of workers that gave up: a successor fences them.
      if (drained) await Promise.all(running.map((w) => w.done));
    },
  };
}

/**
 * Makes every emit of `events` safe for the loops that emit: a listener that throws is reported
 * (a relay:error at "listener of <event>", or the log when that throws too), never thrown into
 * the relay. A throw after a batch committed would otherwise make the batch be sent again, and
 * one in the heartbeat would end a round early.
 */
function guardListeners(events: EventEmitter<RelayEvents>, logger: Logger): void {
  const emit = events.emit.bind(events) as (name: string, ...args: unknown[]) => boolean;
  let reporting = false;
  const guarded = (name: string, ...args: unknown[]): boolean => {
    try {
      return emit(name, ...args);
    } catch (error) {
      if (reporting) {
        logger.error({ err: coerceError(error), event: name }, 'a relay event listener threw');
        return true;
      }
      reporting = true;
      try {
        emit('relay:error', { where: `listener of ${name}`, error: coerceError(error) });
      } catch (again) {
        logger.error({ err: coerceError(again), event: name, first: coerceError(error).message }, 'a relay event listener threw');
      } finally {
        reporting = false;
      }
      return true;
    }
  };
  (events as { emit: unknown }).emit = guarded;
}

/**
 * Sets the shard count: starts a new shard generation (db/migrations/0011). Rows already written,
 * and those of writers still open when it runs, stay on the old generation's shards, which relays
 * drain before they start any shard of the new one. Safe while events are pending and writers run.
 */
export async function setShardCount(db: Db, shards: number, lockTimeoutMs = 2_000): Promise<string> {
  return withRetry(() => reshard(db, shards, lockTimeoutMs), RESHARD_BACKOFF, { retryable: isLockNotAvailable });
}

const RESHARD_BACKOFF: BackoffPolicy = { baseMs: 200, maxMs: 2_000, maxAttempts: 30, maxAgeMs: 120_000 };
