// outbox_read_batch keeps its plan between calls. As a SQL function with a SET clause it is never
// inlined, and Postgres parses and plans its body again on every call: a read that found nothing
// took 1.2 ms (pgbench, one client, a 300,000-row shard with the cursor at its end), against
// 0.1–0.2 ms once the plan is kept — and the relay reads after every nudge. PL/pgSQL keeps plans
// per connection, but left to plan_cache_mode = auto it compares the generic plan's estimate with
// the custom ones and, on a large outbox, plans every call anew (0.44–0.67 ms on the same shard):
// the function forces the generic plan. That plan is the ordered merge of each partition's
// (shard, xid, seq) index scans, like the custom ones: with enable_sort off, a plan that sorts
// costs more than any that does not (test/outbox-reader.test.ts checks the plan that runs).
// Same signature, same rows.
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
    SET plan_cache_mode = force_generic_plan
    AS $$
    BEGIN
      RETURN QUERY ${body};
    END $$`.execute(db);
  await readOnce(db);
}

/** PL/pgSQL checks a body's names only when it first runs it: run it here, not at the relay's first read. */
async function readOnce(db: Kysely<unknown>): Promise<void> {
  await sql`SELECT count(*) FROM outbox_read_batch(0, '0'::xid8, 0, 0, 0)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE OR REPLACE FUNCTION ${signature}
    LANGUAGE sql STABLE
    SET enable_sort = off
    AS $$ ${body} $$`.execute(db);
  await readOnce(db);
}
