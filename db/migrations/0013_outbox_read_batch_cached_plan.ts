// outbox_read_batch keeps its plan between calls. As a SQL function with a SET clause it is never
// inlined, and Postgres plans the body of such a function again on every call: over the outbox's
// day partitions that planning was 0.7 ms of a 1.2–1.3 ms read that found nothing (pgbench, one
// client, an idle shard), and the relay reads after every nudge. PL/pgSQL caches the plan per
// connection: the same read takes 0.10–0.17 ms. The plan stays the ordered merge of each
// partition's (shard, xid, seq) index scans: with enable_sort off no other plan can deliver the
// rows in order, generic or custom (test/outbox-reader.test.ts reads past the first five calls,
// where PL/pgSQL may switch to the generic plan). Same signature, same rows.
import { sql, type Kysely } from 'kysely';

const body = sql.raw(`
      SELECT b.id, b.seq, b.xid, b.topic, b.key, b.type, b.source, b.headers, b.payload, b.created_at
      FROM (
        SELECT o.id, o.seq::text AS seq, o.xid::text AS xid, o.topic, o.key, o.type, o.source, o.headers,
               o.payload::text AS payload, o.created_at,
               sum(octet_length(o.payload::text)) OVER (ORDER BY o.xid, o.seq ROWS UNBOUNDED PRECEDING) - octet_length(o.payload::text) AS bytes_before,
               row_number() OVER (ORDER BY o.xid, o.seq ROWS UNBOUNDED PRECEDING) AS n
        FROM outbox o
        WHERE o.shard = p_shard
          AND (o.xid, o.seq) > (p_xid, p_seq)
          -- below the snapshot horizon (see outbox_read_batch in 0005)
          AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY o.xid, o.seq
        LIMIT p_limit
      ) b
      WHERE b.n = 1 OR b.bytes_before < p_max_bytes`);

const signature = sql.raw(`outbox_read_batch(p_shard integer, p_xid xid8, p_seq bigint, p_limit integer, p_max_bytes bigint)
    RETURNS TABLE (id uuid, seq text, xid text, topic text, key text, type text, source text, headers jsonb, payload text, created_at timestamptz)`);

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE OR REPLACE FUNCTION ${signature}
    LANGUAGE plpgsql STABLE
    SET enable_sort = off
    AS $$
    BEGIN
      RETURN QUERY ${body};
    END $$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE OR REPLACE FUNCTION ${signature}
    LANGUAGE sql STABLE
    SET enable_sort = off
    AS $$ ${body} $$`.execute(db);
}
