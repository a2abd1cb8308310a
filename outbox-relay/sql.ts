// Every statement the relay runs against the outbox and its lease rows, as named functions.
//
// Leases are timed by the database clock. Taking over a shard increments its epoch; every cursor
// update checks owner and epoch, so a former leader can never move the cursor. (What it may still
// send to Kafka is fenced by Kafka itself: see shard-worker.ts.)
import { sql } from 'kysely';
import type { Db } from '../src/db/index.js';
import { isLockNotAvailable } from '../src/errors.js';

export interface Cursor {
  xid: string;
  seq: string;
}

export interface Lease {
  shard: number;
  owner: string;
  epoch: string;
  cursor: Cursor;
}

export interface OutboxRow {
  id: string;
  seq: string;
  xid: string;
  topic: string;
  key: string;
  type: string;
  source: string;
  headers: Record<string, string>;
  /** The JSON payload as text: it becomes the Kafka value as it is. */
  payload: string;
  created_at: Date;
}

export interface ParkedRow {
  seq: string;
  /** With shard and seq, finds the row through outbox_shard_xid_seq_idx (seq alone scans the shard). */
  xid: string;
  errorCode: string;
  errorMessage: string;
}

/**
 * The next rows of `shard` past the cursor in (xid, seq) order, only below the snapshot horizon:
 * every transaction that has not finished yet has an xid >= pg_snapshot_xmin, so a row of a
 * transaction that took its xid early and commits late is read after it commits, never skipped.
 * The query lives in outbox_read_batch (db/migrations/0005, 0011, 0013), which pins the plan to an
 * ordered scan of outbox_shard_xid_seq_idx so a large backlog is never sorted whole, and keeps the
 * plan per connection.
 */
export async function readBatchBelowHorizon(db: Db, shard: number, cursor: Cursor, limit: number, maxBytes: number): Promise<OutboxRow[]> {
  const { rows } = await sql<OutboxRow>`
    SELECT * FROM outbox_read_batch(${shard}, ${cursor.xid}::xid8, ${cursor.seq}::bigint, ${limit}, ${maxBytes}::bigint)`.execute(db);
  return rows;
}

/**
 * The database's next transaction id when the cursor is at or above it (a restored backup, a
 * cut-over to another cluster): every row written from now on would sort below the cursor and
 * be skipped. Undefined when the cursor is sound.
 */
export async function cursorAheadOfDatabase(db: Db, cursor: Cursor): Promise<{ nextXid: string } | undefined> {
  const { rows } = await sql<{ next: string; ahead: boolean }>`
    SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS next,
           ${cursor.xid}::xid8 >= pg_snapshot_xmax(pg_current_snapshot()) AS ahead`.execute(db);
  return rows[0]?.ahead ? { nextXid: rows[0].next } : undefined;
}

/**
 * Age in seconds of the oldest committed row of `shard` that the horizon still hides, if any,
 * judged by the first rows at or above the horizon in the index's (xid, seq) order: a bounded
 * probe, whatever the backlog behind the horizon.
 */
export async function horizonBlockedSeconds(db: Db, shard: number, cursor: Cursor): Promise<number> {
  const { rows } = await horizonProbeQuery(shard, cursor).execute(db);
  return rows[0]?.age ?? 0;
}

/** The statement of horizonBlockedSeconds, on its own so that its plan can be examined. */
export function horizonProbeQuery(shard: number, cursor: Cursor) {
  return sql<{ age: number | null }>`
    SELECT extract(epoch FROM now() - min(created_at))::double precision AS age
    FROM (
      SELECT created_at FROM outbox
      WHERE shard = ${shard}
        AND (xid, seq) > (${cursor.xid}::xid8, ${cursor.seq}::bigint)
        AND xid >= pg_snapshot_xmin(pg_current_snapshot())
      ORDER BY xid, seq
      LIMIT 100
    ) first_hidden`;
}

/**
 * The shards relays work now: those of the oldest shard generation that still has unpublished
 * rows, or the current generation's (db/migrations/0011). Past generations whose rows are all
 * published are marked drained first, so the next one becomes active.
 */
export async function readActiveShards(db: Db): Promise<number[]> {
  await sql`SELECT outbox_mark_drained()`.execute(db);
  const { rows } = await sql<{ shard: number }>`SELECT outbox_active_shards() AS shard`.execute(db);
  return rows.map((r) => r.shard);
}

/**
 * Of `shards`, those nobody leads (no lease row, released, or expired): a plain read, so a
 * standby polling for work locks no lease row.
 */
export async function claimableShards(db: Db, shards: number[]): Promise<number[]> {
  if (shards.length === 0) return [];
  const { rows } = await sql<{ shard: number }>`
    SELECT s.shard FROM unnest(${shards}::int[]) AS s(shard) LEFT JOIN relay_leases l ON l.shard = s.shard
    WHERE l.shard IS NULL OR l.owner IS NULL OR l.expires_at < now() ORDER BY s.shard`.execute(db);
  return rows.map((r) => r.shard);
}

/**
 * Starts a shard generation of `shards` shards (outbox_reshard): waits, `lockTimeoutMs` at a time,
 * for the open writers of outbox; meanwhile new ingest INSERTs wait at most that long.
 */
export async function reshard(db: Db, shards: number, lockTimeoutMs: number): Promise<string> {
  return db.transaction().execute(async (trx) => {
    await sql`SELECT set_config('lock_timeout', ${`${lockTimeoutMs}ms`}, true)`.execute(trx);
    const { rows } = await sql<{ generation: string }>`SELECT outbox_reshard(${shards})::text AS generation`.execute(trx);
    return rows[0]?.generation ?? '';
  });
}

/**
 * Claims `shard` if it is free or its lease has expired. Returns the lease, or undefined. Waits at
 * most `lockWaitMs` for the lease row: a paused former leader may hold it inside its cursor update
 * until the database ends that transaction, and the heartbeat that claims must not wait with it
 * (it renews this relay's other leases).
 */
export async function claimLease(
  db: Db,
  shard: number,
  owner: string,
  ttlMs: number,
  lockWaitMs = Math.max(50, Math.floor(ttlMs / 4)),
): Promise<Lease | undefined> {
  try {
    return await db.transaction().execute(async (trx) => {
      await sql`SELECT set_config('lock_timeout', ${`${lockWaitMs}ms`}, true)`.execute(trx);
      const { rows } = await sql<{ epoch: string; cursor_xid: string; cursor_seq: string }>`
        INSERT INTO relay_leases AS l (shard, owner, epoch, expires_at)
        VALUES (${shard}, ${owner}, 1, now() + make_interval(secs => ${ttlMs / 1000}))
        ON CONFLICT (shard) DO UPDATE
          SET owner = excluded.owner, epoch = l.epoch + 1, expires_at = excluded.expires_at
          WHERE l.owner IS NULL OR l.expires_at < now()
        RETURNING epoch::text, cursor_xid::text, cursor_seq::text`.execute(trx);
      const row = rows[0];
      return row ? { shard, owner, epoch: row.epoch, cursor: { xid: row.cursor_xid, seq: row.cursor_seq } } : undefined;
    });
  } catch (error) {
    if (isLockNotAvailable(error)) return undefined; // the next beat tries again
    throw error;
  }
}

/** Extends the lease; false when it was taken over (a newer epoch) and must be given up. */
export async function renewLease(db: Db, lease: Lease, ttlMs: number): Promise<boolean> {
  const result = await sql`
    UPDATE relay_leases SET expires_at = now() + make_interval(secs => ${ttlMs / 1000})
    WHERE shard = ${lease.shard} AND owner = ${lease.owner} AND epoch = ${lease.epoch}`.execute(db);
  return Number(result.numAffectedRows) === 1;
}

/** Gives the shard up at once (expires_at in the past), so a standby takes over without waiting. */
export async function releaseLease(db: Db, lease: Lease): Promise<void> {
  await sql`
    UPDATE relay_leases SET owner = NULL, expires_at = '-infinity'
    WHERE shard = ${lease.shard} AND owner = ${lease.owner} AND epoch = ${lease.epoch}`.execute(db);
}

/**
 * Advances the shard's cursor past a published batch and parks the rows that failed
 * permanently, in one transaction fenced by owner and epoch. Returns false when fenced: the
 * lease belongs to a newer epoch, and nothing was written.
 */
export async function advanceCursor(db: Db, lease: Lease, to: Cursor, parked: ParkedRow[]): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const result = await sql`
      UPDATE relay_leases SET cursor_xid = ${to.xid}::xid8, cursor_seq = ${to.seq}::bigint, published_at = now()
      WHERE shard = ${lease.shard} AND owner = ${lease.owner} AND epoch = ${lease.epoch}`.execute(trx);
    if (Number(result.numAffectedRows) !== 1) return false;
    for (const p of parked) {
      await sql`
        INSERT INTO outbox_parked (id, seq, xid, shard, topic, key, type, source, headers, payload, created_at, error_code, error_message)
        SELECT id, seq, xid, shard, topic, key, type, source, headers, payload, created_at, ${p.errorCode}, ${p.errorMessage}
        FROM outbox WHERE shard = ${lease.shard} AND xid = ${p.xid}::xid8 AND seq = ${p.seq}::bigint
        ON CONFLICT (seq) DO NOTHING`.execute(trx);
    }
    return true;
  });
}
