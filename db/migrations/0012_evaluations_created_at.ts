// A bound for `since` on the evaluation list. The list walks (application_id, xid, id); a `since`
// was only a filter on that walk, so a `since` near the end of a long history read the whole
// history before finding its rows. With this index the planner reads the rows created since
// then and sorts them when they are few, and walks the xid order when most rows match.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX evaluations_application_created_at_idx ON evaluations (application_id, created_at)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX evaluations_application_created_at_idx`.execute(db);
}
