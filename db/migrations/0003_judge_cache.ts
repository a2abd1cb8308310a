// The judge result cache: one row per (dimension, scorer version, judge model, prompt hash,
// normalised inputs hash). A row is first a CLAIM (one replica is calling the judge for this
// content; others wait for it) and then DONE with the verdict, so identical content is paid for
// once across evaluations and across scorer replicas (see docs/judge.md).
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE judge_cache (
      dimension text NOT NULL,
      scorer_version text NOT NULL,
      judge_model text NOT NULL,
      prompt_hash text NOT NULL,
      inputs_hash text NOT NULL,
      state text NOT NULL CHECK (state IN ('CLAIMED', 'DONE')),
      -- the replica call holding the claim, and when the claim is presumed dead (database clock)
      claimant text,
      claim_expires_at timestamptz,
      -- the verdict (status, value, label, raw value, reasoning, …) once DONE
      outcome jsonb,
      endpoint text,
      input_tokens integer,
      output_tokens integer,
      cost_usd numeric(14, 8),
      latency_ms double precision,
      created_at timestamptz NOT NULL DEFAULT now(),
      completed_at timestamptz,
      PRIMARY KEY (dimension, scorer_version, judge_model, prompt_hash, inputs_hash),
      CHECK ((state = 'DONE') = (outcome IS NOT NULL)),
      CHECK (state = 'DONE' OR (claimant IS NOT NULL AND claim_expires_at IS NOT NULL))
    ) WITH (fillfactor = 90);  -- room for the CLAIMED -> DONE update to stay a HOT update
    -- serves pruning by age; created_at never changes, so it does not block HOT updates
    CREATE INDEX judge_cache_created_at_idx ON judge_cache (created_at);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE judge_cache`.execute(db);
}
