// Stable pagination of GET /v1/evaluations: each row records the id of the transaction that wrote
// it, and lists page in (xid, id) order below the snapshot horizon, so a row whose transaction
// commits late can never land behind a page a client already read (see docs/api.md).
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE evaluations ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
    CREATE INDEX evaluations_application_xid_idx ON evaluations (application_id, xid, id);
    CREATE INDEX evaluations_application_status_xid_idx ON evaluations (application_id, status, xid, id);
    DROP INDEX evaluations_application_id_idx;
    DROP INDEX evaluations_application_status_id_idx;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE INDEX evaluations_application_id_idx ON evaluations (application_id, id);
    CREATE INDEX evaluations_application_status_id_idx ON evaluations (application_id, status, id);
    ALTER TABLE evaluations DROP COLUMN xid;
  `.execute(db);
}
