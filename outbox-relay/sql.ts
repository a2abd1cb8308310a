// Every statement the relay runs against the outbox and its lease rows, as named functions.
//
// Leases are timed by the database clock. Taking over a shard increments its epoch; every cursor
// update checks owner and epoch, so a former leader can never move the cursor. (What it may still
// send to Kafka is fenced by Kafka itself: see shard-worker.ts.)
import { sql } from 'kysely';
import type { Db } from '../src/db/index.js';

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
  errorCode: string;
  errorMessage: string;
}

/**
 * The next rows of `shard` past the cursor in (xid, seq) order, only below the snapshot horizon:
 * every transaction that has not finished yet has an xid >= pg_snapshot_xmin, so a row of a
 * transaction that took its xid early and commits late is read after it commits, never skipped.
 * The query lives in outbox_read_batch (db/migrations/0005), which pins the plan to an ordered
 * scan of outbox_shard_xid_seq_idx so a large backlog is never sorted whole.
 */
export async function readBatchBelowHorizon(db: Db, shard: number, cursor: Cursor, limit: number): Promise<OutboxRow[]> {
  const { rows } = await sql<OutboxRow>`SELECT * FROM outbox_read_batch(${shard}, ${cursor.xid}::xid8, ${cursor.seq}::bigint, ${limit})`.execute(db);
  return rows;
}

/** Age in seconds of the oldest committed row of `shard` that the horizon still hides, if any. */
export async function horizonBlockedSeconds(db: Db, shard: number, cursor: Cursor): Promise<number> {
  const { rows } = await sql<{ age: number | null }>`
    SELECT extract(epoch FROM now() - min(created_at))::double precision AS age
    FROM outbox
    WHERE shard = ${shard}
      AND (xid, seq) > (${cursor.xid}::xid8, ${cursor.seq}::bigint)
      AND xid >= pg_snapshot_xmin(pg_current_snapshot())`.execute(db);
  return rows[0]?.age ?? 0;
}

export async function readShardCount(db: Db): Promise<number> {
  const row = await db.selectFrom('outbox_settings').select('shards').executeTakeFirstOrThrow();
  return row.shards;
}

/** Claims `shard` if it is free or its lease has expired. Returns the lease, or undefined. */
export async function claimLease(db: Db, shard: number, owner: string, ttlMs: number): Promise<Lease | undefined> {
  const { rows } = await sql<{ epoch: string; cursor_xid: string; cursor_seq: string }>`
    INSERT INTO relay_leases AS l (shard, owner, epoch, expires_at)
    VALUES (${shard}, ${owner}, 1, now() + make_interval(secs => ${ttlMs / 1000}))
    ON CONFLICT (shard) DO UPDATE
      SET owner = excluded.owner, epoch = l.epoch + 1, expires_at = excluded.expires_at
      WHERE l.owner IS NULL OR l.expires_at < now()
    RETURNING epoch::text, cursor_xid::text, cursor_seq::text`.execute(db);
  const row = rows[0];
  return row ? { shard, owner, epoch: row.epoch, cursor: { xid: row.cursor_xid, seq: row.cursor_seq } } : undefined;
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
        FROM outbox WHERE shard = ${lease.shard} AND seq = ${p.seq}::bigint
        ON CONFLICT (seq) DO NOTHING`.execute(trx);
    }
    return true;
  });
}

/** True when any shard has rows past its cursor (or rows of a shard that has no lease row yet). */
export async function anyRowPending(db: Db): Promise<boolean> {
  const pending = await sql<{ one: number }>`
    SELECT 1 AS one FROM outbox o LEFT JOIN relay_leases l ON l.shard = o.shard
    WHERE l.shard IS NULL OR (o.xid, o.seq) > (l.cursor_xid, l.cursor_seq) LIMIT 1`.execute(db);
  return pending.rows.length > 0;
}
