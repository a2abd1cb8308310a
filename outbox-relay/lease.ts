// Shard leases timed by the database clock. Taking over a shard increments its epoch; every
// cursor update checks owner and epoch, so a zombie leader (paused past its lease, then woken)
// can publish at most a duplicate batch but can never move the cursor.
import { sql } from 'kysely';
import type { Db } from '../src/db/index.js';

export interface Lease {
  shard: number;
  owner: string;
  epoch: string;
  cursorXid: string;
  cursorSeq: string;
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
  return row ? { shard, owner, epoch: row.epoch, cursorXid: row.cursor_xid, cursorSeq: row.cursor_seq } : undefined;
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

export interface ParkedRow {
  seq: string;
  errorCode: string;
  errorMessage: string;
}

/**
 * Advances the shard's cursor past a published batch and parks the rows that failed
 * permanently, in one transaction fenced by owner and epoch. Returns false when fenced: the
 * lease belongs to a newer epoch, and nothing was written.
 */
export async function advanceCursor(db: Db, lease: Lease, to: { xid: string; seq: string }, parked: ParkedRow[]): Promise<boolean> {
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
