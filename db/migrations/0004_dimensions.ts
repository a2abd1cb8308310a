// The dimensions the running scorers can score (heuristics plus configured judge rubrics),
// published by each scorer at start so the API validates and lists exactly those.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE dimensions (
      id text PRIMARY KEY,
      definition jsonb NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now()
    );
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE dimensions`.execute(db);
}
