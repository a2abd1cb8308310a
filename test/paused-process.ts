// Pausing a real process inside one of its database transactions, deterministically: a trigger
// makes a chosen statement wait on an advisory lock the test holds; once the process's session
// waits there (its xid taken, its row locks held), the process is SIGSTOPped and the lock let go,
// so the statement ends while the process cannot send its COMMIT.
import type { ChildProcess } from 'node:child_process';
import type { PoolClient } from 'pg';
import { sql } from 'kysely';
import { waitFor, type TestDatabase } from './helpers.js';

export interface PausedSession {
  pid: number;
  xid: string;
  stoppedAt: number;
}

export interface StatementGate {
  /** Waits for a session of `applicationName` at the gate, SIGSTOPs `child`, then opens the gate. */
  pauseInside(child: ChildProcess, applicationName: string): Promise<PausedSession>;
  /** Waits until the paused session is gone and the snapshot horizon has passed its xid; ms since the pause. */
  waitUntilLetGo(paused: PausedSession, what: string): Promise<number>;
  /** Opens the gate (if still closed) and removes the trigger. */
  remove(): Promise<void>;
}

/** Gates every INSERT into `table` on advisory lock `key` until pauseInside opens it. */
export async function gateInserts(database: TestDatabase, table: string, key: number): Promise<StatementGate> {
  const name = sql.raw(`gate_${table}`);
  await sql`CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_xact_lock(${sql.raw(String(key))}); RETURN NULL; END $$`.execute(
    database.db,
  );
  await sql`CREATE TRIGGER ${name} BEFORE INSERT ON ${sql.table(table)} FOR EACH STATEMENT EXECUTE FUNCTION ${name}()`.execute(database.db);
  const holder: PoolClient = await database.pool.connect();
  await holder.query('SELECT pg_advisory_lock($1)', [key]);
  return {
    async pauseInside(child, applicationName) {
      const inside = await waitFor(
        async () =>
          (
            await sql<{ pid: number; xid: string }>`
              SELECT pid, backend_xid::text AS xid FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = ${applicationName} AND wait_event = 'advisory' AND backend_xid IS NOT NULL`.execute(
              database.db,
            )
          ).rows[0],
        { what: `${applicationName} inside its gated INSERT into ${table}`, timeoutMs: 60_000, intervalMs: 20 },
      );
      child.kill('SIGSTOP');
      await holder.query('SELECT pg_advisory_unlock($1)', [key]);
      return { ...inside, stoppedAt: Date.now() };
    },
    async waitUntilLetGo(paused, what) {
      await waitFor(
        async () =>
          (
            await sql<{ held: boolean }>`
              SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = ${paused.pid})
                  OR pg_snapshot_xmin(pg_current_snapshot())::text::bigint <= ${paused.xid}::bigint AS held`.execute(database.db)
          ).rows[0]?.held === false,
        { what, timeoutMs: 30_000 },
      );
      return Date.now() - paused.stoppedAt;
    },
    async remove() {
      holder.release(true);
      await sql`DROP TRIGGER IF EXISTS ${name} ON ${sql.table(table)}`.execute(database.db);
      await sql`DROP FUNCTION IF EXISTS ${name}()`.execute(database.db);
    },
  };
}

/** Fails unless the row can be locked within 1 s: nobody (a paused process) holds it. */
export async function expectRowLockFree(database: TestDatabase, table: string, id: string): Promise<void> {
  await database.db.transaction().execute(async (trx) => {
    await sql`SET LOCAL lock_timeout = '1s'`.execute(trx);
    await sql`SELECT id FROM ${sql.table(table)} WHERE id = ${id}::uuid FOR UPDATE`.execute(trx);
  });
}
