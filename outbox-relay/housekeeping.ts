// Housekeeping beside the shard workers: the horizon-blocker report and partition maintenance.
// Neither is on the publishing path, and neither runs before leases are claimed.
import type { EventEmitter } from 'node:events';
import type { Db } from '../src/db/index.js';
import { coerceError } from '../src/errors.js';
import { findHorizonBlocker } from '../src/inspect.js';
import type { Logger } from '../src/logging.js';
import { maintainPartitions } from './partitions.js';
import type { RelayEvents } from './relay.js';
import type { ShardWorker } from './shard-worker.js';
import { horizonBlockedSeconds } from './sql.js';

export interface HousekeepingContext {
  db: Db;
  events: EventEmitter<RelayEvents>;
  logger: Logger;
  workers: Map<number, ShardWorker>;
  horizonReportAfterMs: number;
  retentionHours: number;
  partitionsAhead: number;
}

export function createHorizonCheck(ctx: HousekeepingContext): () => Promise<void> {
  let lastBlockerReport = 0;
  return async () => {
    for (const [shard, worker] of ctx.workers) {
      const seconds = await horizonBlockedSeconds(ctx.db, shard, worker.cursor());
      if (seconds * 1000 < ctx.horizonReportAfterMs) {
        ctx.events.emit('relay:horizonBlocked', { shard, seconds: 0, blocker: undefined });
        continue;
      }
      const blocker = await findHorizonBlocker(ctx.db);
      ctx.events.emit('relay:horizonBlocked', { shard, seconds, blocker });
      // The log line is rate-limited; the metric is always current.
      if (Date.now() - lastBlockerReport > 30_000) {
        lastBlockerReport = Date.now();
        ctx.logger.warn(
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
  };
}

export async function runPartitionMaintenance(ctx: HousekeepingContext): Promise<void> {
  try {
    const outcome = await maintainPartitions(ctx.db, { retentionHours: ctx.retentionHours, partitionsAhead: ctx.partitionsAhead });
    ctx.events.emit('relay:partitions', outcome);
  } catch (error) {
    ctx.events.emit('relay:error', { where: 'partition maintenance', error: coerceError(error) });
  }
}
