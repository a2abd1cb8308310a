// Gap-safe reading of one shard's outbox rows.
import { sql } from 'kysely';
import type { Db } from '../src/db/index.js';

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

/**
 * The next rows of `shard` past the cursor in (xid, seq) order, only below the snapshot horizon:
 * every transaction that has not finished yet has an xid >= pg_snapshot_xmin, so a row of a
 * transaction that took its xid early and commits late is read after it commits, never skipped.
 * The query lives in outbox_read_batch (db/migrations/0005), which pins the plan to an ordered
 * scan of outbox_shard_xid_seq_idx so a large backlog is never sorted whole.
 */
export async function readBatchBelowHorizon(db: Db, shard: number, cursor: { xid: string; seq: string }, limit: number): Promise<OutboxRow[]> {
  const { rows } = await sql<OutboxRow>`SELECT * FROM outbox_read_batch(${shard}, ${cursor.xid}::xid8, ${cursor.seq}::bigint, ${limit})`.execute(db);
  return rows;
}

/** Age in seconds of the oldest committed row of `shard` that the horizon still hides, if any. */
export async function horizonBlockedSeconds(db: Db, shard: number, cursor: { xid: string; seq: string }): Promise<number> {
  const { rows } = await sql<{ age: number | null }>`
    SELECT extract(epoch FROM now() - min(created_at))::double precision AS age
    FROM outbox
    WHERE shard = ${shard}
      AND (xid, seq) > (${cursor.xid}::xid8, ${cursor.seq}::bigint)
      AND xid >= pg_snapshot_xmin(pg_current_snapshot())`.execute(db);
  return rows[0]?.age ?? 0;
}
