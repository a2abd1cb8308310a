// Resharding without losing or reordering a row, a byte bound on the relay's read, and a
// horizon check that does not grow with the backlog.
//
// Shard generations. `shard = shard_base + hash(key) mod shards`, read from outbox_settings in
// the writer's own INSERT. Changing the count starts a new generation whose shard numbers follow
// the old ones', so a row written with the old count lands on an old shard, which keeps its lease
// row and cursor and is still read: no row is stranded on a shard nobody claims. Relays work only
// the oldest generation that still has unpublished rows (marked drained_at once it has none), so
// every row of a key in the old generation reaches Kafka before any row of that key in the new
// one. outbox_reshard takes a SHARE lock on outbox: it waits for every open transaction that has
// written to outbox (they commit with the old generation) and holds new INSERTs until it commits
// (they then see the new generation: under READ COMMITTED an INSERT's snapshot is taken after it
// got its lock). So once the switch has committed, no row of the old generation can appear.
//
// outbox_read_batch gains a byte bound: rows in (xid, seq) order while the payload bytes before
// each row stay under p_max_bytes (the first row always), so one batch's memory is bounded by
// bytes, not rows, whatever the payloads weigh.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE outbox_settings
      ADD COLUMN generation bigint NOT NULL DEFAULT 1,
      ADD COLUMN shard_base integer NOT NULL DEFAULT 0 CHECK (shard_base >= 0);

    CREATE FUNCTION outbox_read_batch(p_shard integer, p_xid xid8, p_seq bigint, p_limit integer, p_max_bytes bigint)
    RETURNS TABLE (id uuid, seq text, xid text, topic text, key text, type text, source text, headers jsonb, payload text, created_at timestamptz)
    LANGUAGE sql STABLE
    SET enable_sort = off
    AS $$
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
      WHERE b.n = 1 OR b.bytes_before < p_max_bytes
    $$;

    -- Every generation ever started; a past one is drained once all its rows are published.
    CREATE TABLE outbox_shard_generations (
      generation bigint PRIMARY KEY,
      shard_base integer NOT NULL,
      shards integer NOT NULL CHECK (shards > 0),
      started_at timestamptz NOT NULL DEFAULT now(),
      drained_at timestamptz
    );
    INSERT INTO outbox_shard_generations (generation, shard_base, shards) SELECT generation, shard_base, shards FROM outbox_settings;

    CREATE OR REPLACE FUNCTION outbox_shard_of(key text) RETURNS integer
      LANGUAGE sql STABLE PARALLEL SAFE
      AS $$ SELECT shard_base + (abs(hashtext(key)::bigint) % shards)::integer FROM outbox_settings $$;

    -- Starts a generation of p_shards shards; returns the new generation (the current one when the
    -- count is unchanged). Call it with a lock_timeout: it waits for open writers of outbox.
    CREATE FUNCTION outbox_reshard(p_shards integer) RETURNS bigint
      LANGUAGE plpgsql AS $$
    DECLARE
      cur outbox_settings%ROWTYPE;
    BEGIN
      IF p_shards IS NULL OR p_shards < 1 THEN
        RAISE EXCEPTION 'the shard count must be positive, got %', p_shards USING ERRCODE = '22023';
      END IF;
      LOCK TABLE outbox IN SHARE MODE;
      SELECT * INTO cur FROM outbox_settings FOR UPDATE;
      IF cur.shards = p_shards THEN
        RETURN cur.generation;
      END IF;
      -- The closing generation's count as it really was (it may have been set by hand).
      INSERT INTO outbox_shard_generations (generation, shard_base, shards)
        VALUES (cur.generation, cur.shard_base, cur.shards)
        ON CONFLICT (generation) DO UPDATE SET shard_base = excluded.shard_base, shards = excluded.shards;
      INSERT INTO outbox_shard_generations (generation, shard_base, shards)
        VALUES (cur.generation + 1, cur.shard_base + cur.shards, p_shards);
      UPDATE outbox_settings SET generation = cur.generation + 1, shard_base = cur.shard_base + cur.shards, shards = p_shards;
      RETURN cur.generation + 1;
    END $$;

    -- The shards relays work now: those of the oldest generation that is not drained (the current
    -- one when every older one is).
    CREATE FUNCTION outbox_active_shards() RETURNS SETOF integer
      LANGUAGE sql STABLE AS $$
      WITH g AS (
        SELECT shard_base, shards FROM outbox_shard_generations
        WHERE drained_at IS NULL AND generation < (SELECT generation FROM outbox_settings)
        UNION ALL SELECT shard_base, shards FROM outbox_settings
      ), oldest AS (SELECT * FROM g ORDER BY shard_base LIMIT 1)
      SELECT generate_series(shard_base, shard_base + shards - 1) FROM oldest $$;

    -- Every shard that may hold an unpublished row: the current generation's and every undrained one's.
    CREATE FUNCTION outbox_live_shards() RETURNS SETOF integer
      LANGUAGE sql STABLE AS $$
      SELECT generate_series(shard_base, shard_base + shards - 1) FROM outbox_settings
      UNION
      SELECT generate_series(shard_base, shard_base + shards - 1) FROM outbox_shard_generations
      WHERE drained_at IS NULL AND generation < (SELECT generation FROM outbox_settings) $$;

    -- Marks past generations drained, oldest first, while none of their shards has a row past its
    -- cursor. Returns how many were marked. (No row of a past generation can still be written.)
    CREATE FUNCTION outbox_mark_drained() RETURNS integer
      LANGUAGE plpgsql AS $$
    DECLARE
      g outbox_shard_generations%ROWTYPE;
      marked integer := 0;
    BEGIN
      FOR g IN SELECT * FROM outbox_shard_generations
               WHERE drained_at IS NULL AND generation < (SELECT generation FROM outbox_settings)
               ORDER BY generation LOOP
        IF EXISTS (
          SELECT 1 FROM generate_series(g.shard_base, g.shard_base + g.shards - 1) s(shard)
          LEFT JOIN relay_leases l ON l.shard = s.shard
          WHERE EXISTS (SELECT 1 FROM outbox o WHERE o.shard = s.shard
                          AND (o.xid, o.seq) > (coalesce(l.cursor_xid, '0'::xid8), coalesce(l.cursor_seq, 0)))
        ) THEN
          EXIT;
        END IF;
        UPDATE outbox_shard_generations SET drained_at = now() WHERE generation = g.generation;
        marked := marked + 1;
      END LOOP;
      RETURN marked;
    END $$;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP FUNCTION outbox_read_batch(integer, xid8, bigint, integer, bigint);
    DROP FUNCTION outbox_mark_drained(), outbox_live_shards(), outbox_active_shards(), outbox_reshard(integer);
    CREATE OR REPLACE FUNCTION outbox_shard_of(key text) RETURNS integer
      LANGUAGE sql STABLE PARALLEL SAFE
      AS $$ SELECT (abs(hashtext(key)::bigint) % shards)::integer FROM outbox_settings $$;
    DROP TABLE outbox_shard_generations;
    ALTER TABLE outbox_settings DROP COLUMN shard_base, DROP COLUMN generation;
  `.execute(db);
}
