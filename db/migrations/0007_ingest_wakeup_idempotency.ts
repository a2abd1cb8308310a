// Ingest at the machine's limit, and idempotency that never loses a request.
// 1. The outbox trigger that NOTIFYed inside every writing transaction goes: a transaction that
//    notifies holds a cluster-wide lock through its commit (WAL flush included), so all writers
//    committed one at a time. Writers now nudge the relay after they commit, from a transaction
//    of their own (src/outbox-wakeup.ts); the relay's poll remains the safety net.
// 2. `externalId` gets its own column, unique per application, instead of sharing
//    idempotency_key with the Idempotency-Key header (one silently overwrote the other), and each
//    evaluation keeps a fingerprint of the request that created it, so a replay with the same key
//    and a different body is refused instead of answered with the old evaluation.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP TRIGGER outbox_notify ON outbox;
    DROP FUNCTION outbox_notify();
    ALTER TABLE outbox_settings DROP COLUMN notify;

    ALTER TABLE evaluations ADD COLUMN external_id text, ADD COLUMN request_fingerprint bytea;
    -- Before this migration the column held either kind of key, and GET showed it as externalId.
    UPDATE evaluations SET external_id = idempotency_key WHERE idempotency_key IS NOT NULL;
    -- serves the uniqueness of externalId and its lookup on a conflict
    CREATE UNIQUE INDEX evaluations_external_id_idx ON evaluations (application_id, external_id) WHERE external_id IS NOT NULL;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP INDEX evaluations_external_id_idx;
    ALTER TABLE evaluations DROP COLUMN request_fingerprint, DROP COLUMN external_id;
    ALTER TABLE outbox_settings ADD COLUMN notify boolean NOT NULL DEFAULT true;
    CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF (SELECT notify FROM outbox_settings) THEN
        PERFORM pg_notify('evalbox_outbox', NEW.shard::text);
      END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION outbox_notify();
  `.execute(db);
}
