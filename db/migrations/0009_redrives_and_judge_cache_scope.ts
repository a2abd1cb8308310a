// Redrives applied once, and a judge cache scoped to the endpoint that answered.
// - evaluation_redrives: each DLT redrive (by its id, the DLT record it came from) is applied to
//   its evaluation at most once, in the transaction that writes its result; a second delivery of
//   the same redrive is a redelivery: nothing is scored, paid, written or published again.
// - judge_cache.judge_endpoint joins the key: one model name served by two providers never
//   shares verdicts. judge_cache.paid_by_application records who paid for the verdict, so a
//   hit is shown as a hit (with zero cost) only to that application.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE evaluation_redrives (
      redrive_id text PRIMARY KEY,
      evaluation_id uuid NOT NULL REFERENCES evaluations (id) ON DELETE CASCADE,
      applied_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX evaluation_redrives_evaluation_id_idx ON evaluation_redrives (evaluation_id);

    ALTER TABLE judge_cache ADD COLUMN judge_endpoint text NOT NULL DEFAULT '';
    ALTER TABLE judge_cache ADD COLUMN paid_by_application text;
    ALTER TABLE judge_cache DROP CONSTRAINT judge_cache_pkey;
    ALTER TABLE judge_cache ADD PRIMARY KEY (dimension, scorer_version, judge_model, judge_endpoint, prompt_hash, inputs_hash);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP TABLE evaluation_redrives;
    DELETE FROM judge_cache WHERE judge_endpoint <> '';
    ALTER TABLE judge_cache DROP CONSTRAINT judge_cache_pkey;
    ALTER TABLE judge_cache DROP COLUMN paid_by_application;
    ALTER TABLE judge_cache DROP COLUMN judge_endpoint;
    ALTER TABLE judge_cache ADD PRIMARY KEY (dimension, scorer_version, judge_model, prompt_hash, inputs_hash);
  `.execute(db);
}
