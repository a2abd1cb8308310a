// The lease heartbeat: renews the lease of every shard this relay works, and claims free shards
// while the relay is not stopping. It runs until the leases are released, so a drain never
// outlives the lease it drains under.
import { performance } from 'node:perf_hooks';
import type { EventEmitter } from 'node:events';
import type { Db } from '../src/db/index.js';
import { coerceError } from '../src/errors.js';
import type { RelayEvents } from './relay.js';
import type { ShardWorker } from './shard-worker.js';
import { claimableShards, claimLease, readActiveShards, renewLease, type Lease } from './sql.js';

export interface HeartbeatContext {
  db: Db;
  events: EventEmitter<RelayEvents>;
  instanceId: string;
  leaseTtlMs: number;
  maxShards: number;
  workers: Map<number, ShardWorker>;
  /** Starts a worker on a lease just claimed; `sentAt` is when the claim was sent (performance.now()). */
  startWorker: (lease: Lease, sentAt: number) => void;
  /** Stops the worker of a shard that is no longer active (its generation is drained) and releases its lease. */
  retireWorker: (shard: number) => void;
}

/** Renews every held lease. A renewal that finds a newer owner, or that fails, loses the lease. */
export async function renewLeases(ctx: HeartbeatContext): Promise<void> {
  for (const worker of ctx.workers.values()) {
    if (worker.lost()) continue;
    const sentAt = performance.now();
    try {
      if (await renewLease(ctx.db, worker.lease, ctx.leaseTtlMs)) worker.renewed(sentAt);
      else worker.markLost('renew-failed');
    } catch (error) {
      // Whether the lease was extended is unknown: stop working the shard rather than risk it.
      ctx.events.emit('relay:error', { where: 'lease renewal', error: coerceError(error) });
      worker.markLost('renew-error');
    }
  }
}

/**
 * Claims free or expired shards of the active generation, up to maxShards, and retires workers of
 * shards that left it. Standbys only read here: a lease row is written only when it is claimable.
 */
export async function claimFreeShards(ctx: HeartbeatContext): Promise<void> {
  try {
    const active = await readActiveShards(ctx.db);
    for (const shard of ctx.workers.keys()) if (!active.includes(shard)) ctx.retireWorker(shard);
    if (ctx.workers.size >= ctx.maxShards) return;
    const free = await claimableShards(
      ctx.db,
      active.filter((shard) => !ctx.workers.has(shard)),
    );
    for (const shard of free) {
      if (ctx.workers.size >= ctx.maxShards) break;
      const sentAt = performance.now();
      const lease = await claimLease(ctx.db, shard, ctx.instanceId, ctx.leaseTtlMs);
      if (lease) ctx.startWorker(lease, sentAt);
    }
  } catch (error) {
    ctx.events.emit('relay:error', { where: 'lease claim', error: coerceError(error) });
  }
}
