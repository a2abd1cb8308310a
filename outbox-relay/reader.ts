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
 * Served by outbox_shard_xid_seq_idx (one range scan per partition, merged in order).
 */
export async function readBatchBelowHorizon(db: Db, shard: number, cursor: { xid: string; seq: string }, limit: number): Promise<OutboxRow[]> {
  const { rows } = await sql<OutboxRow>`
    SELECT o.id, o.seq::text AS seq, o.xid::text AS xid, o.topic, o.key, o.type, o.source, o.headers, o.payload::text AS payload, o.created_at
    FROM outbox o
    WHERE o.shard = ${shard}
      AND (o.xid, o.seq) > (${cursor.xid}::xid8, ${cursor.seq}::bigint)
      AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
    -- qualified: an unqualified name would sort by the text output columns of the same name
    ORDER BY o.xid, o.seq
    LIMIT ${limit}`.execute(db);
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
