// The API's results, client scores, deletion and richer input.
// 1. Polling and the results stream: each evaluation records the id of the transaction that last
//    decided its result (`scored_xid`, set by a trigger whenever status or scored_at change, so
//    every writer of a result is covered), and two partial indexes serve reading an application's
//    results in (scored_xid, id) order and by scored_at. PENDING rows are in neither, so ingest
//    pays nothing for them.
// 2. Scores from elsewhere: a score's source may be HUMAN or CLIENT.
// 3. Deletion: a tombstone per deleted evaluation (ids and time only, never content), so a scorer
//    that meets the event of an evaluation deleted meanwhile knows it was deleted, not lost.
// 4. Richer input: chat messages with tool calls, tags, session and user ids, and the token
//    usage, latency and cost of the call being judged.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE evaluations ADD COLUMN scored_xid xid8;
    UPDATE evaluations SET scored_xid = xid WHERE scored_at IS NOT NULL;
    CREATE FUNCTION evaluations_mark_scored() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.status IS DISTINCT FROM OLD.status OR NEW.scored_at IS DISTINCT FROM OLD.scored_at THEN
        NEW.scored_xid := pg_current_xact_id();
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER evaluations_mark_scored BEFORE UPDATE OF status, scored_at ON evaluations
      FOR EACH ROW EXECUTE FUNCTION evaluations_mark_scored();
    -- serves the results stream and polling with a cursor: one application's results in commit order
    CREATE INDEX evaluations_application_scored_xid_idx ON evaluations (application_id, scored_xid, id) WHERE scored_xid IS NOT NULL;
    -- serves the first poll of scoredSince: one application's results of a bounded time window
    CREATE INDEX evaluations_application_scored_at_idx ON evaluations (application_id, scored_at) WHERE scored_xid IS NOT NULL;

    ALTER TABLE scores DROP CONSTRAINT scores_source_check;
    ALTER TABLE scores ADD CONSTRAINT scores_source_check CHECK (source IN ('LLM_JUDGE', 'HEURISTIC', 'HUMAN', 'CLIENT'));

    CREATE TABLE evaluation_deletions (
      evaluation_id uuid PRIMARY KEY,
      application_id text NOT NULL,
      deleted_at timestamptz NOT NULL DEFAULT now()
    );

    ALTER TABLE evaluations
      ADD COLUMN messages jsonb,
      ADD COLUMN tags text[],
      ADD COLUMN session_id text,
      ADD COLUMN user_id text,
      ADD COLUMN call_input_tokens integer,
      ADD COLUMN call_output_tokens integer,
      ADD COLUMN call_latency_ms double precision,
      ADD COLUMN call_cost_usd numeric(14, 8);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE evaluations
      DROP COLUMN messages, DROP COLUMN tags, DROP COLUMN session_id, DROP COLUMN user_id,
      DROP COLUMN call_input_tokens, DROP COLUMN call_output_tokens, DROP COLUMN call_latency_ms, DROP COLUMN call_cost_usd;
    DROP TABLE evaluation_deletions;
    DELETE FROM scores WHERE source IN ('HUMAN', 'CLIENT');
    ALTER TABLE scores DROP CONSTRAINT scores_source_check;
    ALTER TABLE scores ADD CONSTRAINT scores_source_check CHECK (source IN ('LLM_JUDGE', 'HEURISTIC'));
    DROP TRIGGER evaluations_mark_scored ON evaluations;
    DROP FUNCTION evaluations_mark_scored();
    ALTER TABLE evaluations DROP COLUMN scored_xid;
  `.execute(db);
}
