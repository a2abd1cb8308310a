// The SQL behind `evalbox outbox …`, one named function per question. The read-only questions
// live in db/inspect/*.sql (one file each, with the same header); this module names them and
// holds the one write, the redrive of parked rows. Indexes (db/migrations/0001_initial.ts):
//   backlog, oldest   outbox_shard_xid_seq_idx (shard, xid, seq): one range scan per shard past its cursor
//   throughput        outbox partitions pruned on created_at, then the per-shard cursor comparison
//   keyHistory        outbox_key_idx (key, created_at)
//   horizonBlocker    pg_stat_activity (no table index)
//   parked, redrive   a scan of outbox_parked, small by design (rows the relay could not publish)
import { sql } from 'kysely';
import type { Db } from '../db/index.js';
import { runInspection } from '../inspect.js';

type Row = Record<string, unknown>;

/** Unpublished events and the oldest one's age, per topic (db/inspect/backlog.sql). */
export const backlog = (db: Db): Promise<Row[]> => runInspection(db, 'backlog');

/** The `limit` oldest unpublished events, and whether the horizon still hides each (db/inspect/oldest.sql). */
export const oldestPending = (db: Db, limit: number): Promise<Row[]> => runInspection(db, 'oldest', [limit]);

/** Events published per minute over the last `minutes`, per topic (db/inspect/throughput.sql). */
export const publishThroughput = (db: Db, minutes: number): Promise<Row[]> => runInspection(db, 'throughput', [minutes]);

/** The backend whose open transaction holds the relay's snapshot horizon back (db/inspect/horizon_blocker.sql). */
export const horizonBlocker = (db: Db): Promise<Row[]> => runInspection(db, 'horizon_blocker');

/** One key's events in relay order with their state (db/inspect/key_history.sql). */
export const keyHistory = (db: Db, key: string, limit: number): Promise<Row[]> => runInspection(db, 'key_history', [key, limit]);

/** Rows the relay parked, newest first (db/inspect/parked.sql). */
export const parkedRows = (db: Db, limit: number): Promise<Row[]> => runInspection(db, 'parked', [limit]);

/** Relay shards: leader, epoch, cursor, last publish (db/inspect/relay_shards.sql; the lease table's primary key). */
export const relayShards = (db: Db): Promise<Row[]> => runInspection(db, 'relay_shards');

/** Counts per pipeline stage and minute over the last `minutes` (db/inspect/stage_counts.sql). */
export const stageCounts = (db: Db, minutes: number): Promise<Row[]> => runInspection(db, 'stage_counts', [minutes]);

/**
 * Re-inserts parked rows into the outbox as new rows with the same event id (a stable ce_id),
 * marking them redriven in the same transaction, so a second redrive finds nothing to do.
 * A scan of outbox_parked (its key is seq; the table holds only what the relay refused).
 */
export async function redriveParked(db: Db, target: { id?: string; all?: boolean }): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ id: string }>`
      WITH chosen AS (
        UPDATE outbox_parked SET redriven_at = now()
        WHERE redriven_at IS NULL AND (${target.all === true} OR id = ${target.id ?? null}::uuid)
        RETURNING id, topic, key, type, source, headers, payload
      ), requeued AS (
        INSERT INTO outbox (id, shard, topic, key, type, source, headers, payload)
        SELECT id, outbox_shard_of(key), topic, key, type, source, headers, payload FROM chosen
        RETURNING id
      )
      SELECT id FROM requeued`.execute(trx);
    return rows.map((r) => r.id);
  });
}
