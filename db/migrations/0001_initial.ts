// The initial schema: evaluations, scores, api keys, and the append-only, time-partitioned outbox
// with the relay's per-shard lease and cursor rows. Never edit once landed; add a new migration.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE api_keys (
      id uuid PRIMARY KEY,
      application_id text NOT NULL,
      -- sha256 of the whole key; the key itself is shown once and never stored
      key_hash bytea NOT NULL UNIQUE,
      prefix text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      revoked_at timestamptz
    );
    CREATE INDEX api_keys_application_idx ON api_keys (application_id);

    CREATE TABLE evaluations (
      id uuid PRIMARY KEY,  -- uuid v7: time-ordered, so it doubles as the pagination key
      application_id text NOT NULL,
      model_id text,
      prompt text NOT NULL,
      response text NOT NULL,
      context jsonb,         -- a string or an array of strings
      reference text,
      metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
      dimensions text[] NOT NULL,
      status text NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'SCORED', 'PARTIALLY_SCORED', 'SCORING_FAILED')),
      idempotency_key text,
      created_at timestamptz NOT NULL DEFAULT now(),
      scored_at timestamptz,
      CONSTRAINT evaluations_idempotency_key UNIQUE (application_id, idempotency_key)
    );
    -- serves GET /v1/evaluations: one application's rows in id order, optionally by status
    CREATE INDEX evaluations_application_id_idx ON evaluations (application_id, id);
    CREATE INDEX evaluations_application_status_id_idx ON evaluations (application_id, status, id);

    CREATE TABLE scores (
      evaluation_id uuid NOT NULL REFERENCES evaluations (id) ON DELETE CASCADE,
      dimension text NOT NULL,
      value double precision CHECK (value >= 0 AND value <= 1),
      label text,
      raw_value double precision,
      direction text CHECK (direction IN ('higher_is_better', 'lower_is_better')),
      reasoning text,
      source text NOT NULL CHECK (source IN ('LLM_JUDGE', 'HEURISTIC')),
      scorer_name text NOT NULL,
      scorer_version text NOT NULL,
      judge_model text,
      prompt_hash text,
      status text NOT NULL CHECK (status IN ('PENDING', 'COMPLETED', 'SKIPPED', 'ERROR')),
      error_code text,
      attempts integer NOT NULL DEFAULT 0,
      input_tokens integer,
      output_tokens integer,
      latency_ms double precision,
      cost_usd numeric(14, 8),
      cache_hit boolean NOT NULL DEFAULT false,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (evaluation_id, dimension)
    );

    -- One row: how many relay shards the outbox is split into, and whether writers NOTIFY.
    CREATE TABLE outbox_settings (
      singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
      shards integer NOT NULL DEFAULT 1 CHECK (shards > 0),
      notify boolean NOT NULL DEFAULT true
    );
    INSERT INTO outbox_settings DEFAULT VALUES;

    -- shard = hash(key) mod N, computed in the database so every writer agrees with the relay.
    CREATE FUNCTION outbox_shard_of(key text) RETURNS integer
      LANGUAGE sql STABLE PARALLEL SAFE
      AS $$ SELECT (abs(hashtext(key)::bigint) % shards)::integer FROM outbox_settings $$;

    -- Append-only: rows are never updated or deleted; old partitions are dropped whole.
    -- (xid, seq) is the relay's reading order; xid is the writing transaction's id.
    CREATE TABLE outbox (
      id uuid NOT NULL,                           -- the event id, ce_id on Kafka
      seq bigint GENERATED ALWAYS AS IDENTITY,
      xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
      shard integer NOT NULL,
      topic text NOT NULL,
      key text NOT NULL,
      type text NOT NULL,                         -- ce_type
      source text NOT NULL,                       -- ce_source
      headers jsonb NOT NULL DEFAULT '{}'::jsonb, -- extra Kafka headers (traceparent, …)
      payload jsonb NOT NULL,                     -- the CloudEvents data, the Kafka value
      created_at timestamptz NOT NULL DEFAULT now()
    ) PARTITION BY RANGE (created_at);
    -- serves the relay's read: one shard, past the cursor, in (xid, seq) order
    CREATE INDEX outbox_shard_xid_seq_idx ON outbox (shard, xid, seq);
    -- serves a key's history (evalbox outbox key)
    CREATE INDEX outbox_key_idx ON outbox (key, created_at);
    -- catches a row whose day has no partition yet, so an insert never fails for that reason
    CREATE TABLE outbox_default PARTITION OF outbox DEFAULT;

    -- Writers nudge the relay; identical notifications in one transaction are merged by Postgres.
    CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF (SELECT notify FROM outbox_settings) THEN
        PERFORM pg_notify('evalbox_outbox', NEW.shard::text);
      END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION outbox_notify();

    -- Creates the daily partitions covering [day, day + days). Idempotent.
    CREATE FUNCTION outbox_create_partitions(first_day date, days integer) RETURNS integer
      LANGUAGE plpgsql AS $$
    DECLARE
      created integer := 0;
      day date;
      name text;
    BEGIN
      FOR i IN 0 .. days - 1 LOOP
        day := first_day + i;
        name := 'outbox_p' || to_char(day, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
          EXECUTE format('CREATE TABLE %I PARTITION OF outbox FOR VALUES FROM (%L) TO (%L)',
                         name, day::timestamptz, (day + 1)::timestamptz);
          created := created + 1;
        END IF;
      END LOOP;
      RETURN created;
    END $$;
    SELECT outbox_create_partitions((now() AT TIME ZONE 'UTC')::date - 1, 5);

    -- A shard's owner (lease with an epoch that fences a zombie) and its cursor.
    CREATE TABLE relay_leases (
      shard integer PRIMARY KEY,
      owner text,
      epoch bigint NOT NULL DEFAULT 0,
      expires_at timestamptz NOT NULL DEFAULT '-infinity',
      cursor_xid xid8 NOT NULL DEFAULT '0'::xid8,
      cursor_seq bigint NOT NULL DEFAULT 0,
      published_at timestamptz
    );

    -- Rows the relay could not publish for a permanent reason; visible and redrivable.
    CREATE TABLE outbox_parked (
      id uuid NOT NULL,
      seq bigint NOT NULL PRIMARY KEY,
      xid xid8 NOT NULL,
      shard integer NOT NULL,
      topic text NOT NULL,
      key text NOT NULL,
      type text NOT NULL,
      source text NOT NULL,
      headers jsonb NOT NULL,
      payload jsonb NOT NULL,
      created_at timestamptz NOT NULL,
      error_code text NOT NULL,
      error_message text NOT NULL,
      parked_at timestamptz NOT NULL DEFAULT now(),
      redriven_at timestamptz
    );
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP TABLE outbox_parked, relay_leases, outbox, outbox_settings, scores, evaluations, api_keys;
    DROP FUNCTION outbox_create_partitions(date, integer), outbox_notify(), outbox_shard_of(text);
  `.execute(db);
}
