// Retention without DELETE on the hot path: daily outbox partitions are created ahead of time and
// dropped whole once they are older than the retention window AND every row in them is behind its
// shard's cursor.
//
// Partition DDL needs an ACCESS EXCLUSIVE lock on outbox. Waiting for it would queue every ingest
// INSERT behind the DDL, for as long as any reader of outbox runs: every DDL statement here runs
// with a short lock_timeout, is retried a few times, and otherwise waits for the next round.
import { sql, type Kysely } from 'kysely';
import type { Database, Db } from '../src/db/index.js';
import { isLockNotAvailable } from '../src/errors.js';

export interface PartitionMaintenance {
  created: string[];
  dropped: string[];
  /** Old partitions kept because they still hold unpublished rows. */
  kept: string[];
  /** Partitions that could not be created or dropped this round (lock timeout, rows in the default partition, ...). */
  failed: { partition: string; error: string }[];
  /** Rows in outbox_default (their day had no partition); old published ones are deleted. */
  defaultRows: number;
  /** Another relay was maintaining: nothing was done this round. */
  skipped: boolean;
}

export interface PartitionOptions {
  retentionHours: number;
  partitionsAhead: number;
  /** The day to plan from; default: the database's clock, which also stamps created_at. */
  now?: Date;
  /** How long one DDL statement may wait for its lock before giving up (default 100 ms). */
  lockTimeoutMs?: number;
  /** Attempts per DDL statement within one round (default 3). */
  attempts?: number;
}

const DAY_MS = 86_400_000;
const partitionName = (day: Date) => `outbox_p${day.toISOString().slice(0, 10).replace(/-/g, '')}`;
const utcDay = (at: Date) => new Date(Math.floor(at.getTime() / DAY_MS) * DAY_MS);

/** Runs `ddl` in its own transaction with a short lock_timeout, retrying a lock timeout a few times. */
async function withShortLock<T>(conn: Kysely<Database>, options: PartitionOptions, ddl: (trx: Kysely<Database>) => Promise<T>): Promise<T> {
  const attempts = options.attempts ?? 3;
  for (let attempt = 1; ; attempt++) {
    try {
      return await conn.transaction().execute(async (trx) => {
        await sql`SELECT set_config('lock_timeout', ${`${options.lockTimeoutMs ?? 100}ms`}, true)`.execute(trx);
        return ddl(trx);
      });
    } catch (error) {
      if (!isLockNotAvailable(error) || attempt >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt + Math.random() * 100));
    }
  }
}

/** A row of `table` still needed: its shard has no cursor yet or the cursor is before it. */
const pendingIn = (trx: Kysely<Database>, table: string, extra = sql`true`) =>
  sql<{ one: number }>`
    SELECT 1 AS one FROM ${sql.table(table)} o LEFT JOIN relay_leases l ON l.shard = o.shard
    WHERE (l.shard IS NULL OR (o.xid, o.seq) > (l.cursor_xid, l.cursor_seq)) AND ${extra} LIMIT 1`.execute(trx);

export async function maintainPartitions(db: Db, options: PartitionOptions): Promise<PartitionMaintenance> {
  const outcome: PartitionMaintenance = { created: [], dropped: [], kept: [], failed: [], defaultRows: 0, skipped: false };
  await db.connection().execute(async (conn) => {
    // One maintainer at a time across relays; the others skip this round.
    const { rows } = await sql<{ locked: boolean }>`SELECT pg_try_advisory_lock(hashtext('evalbox.outbox.partitions')) AS locked`.execute(conn);
    if (!rows[0]?.locked) {
      outcome.skipped = true;
      return;
    }
    try {
      const now = options.now ?? (await sql<{ now: Date }>`SELECT now() AS now`.execute(conn)).rows[0]?.now ?? new Date();
      await createAhead(conn, options, now, outcome);
      await dropExpired(conn, options, now, outcome);
      await expireDefaultRows(conn, options, now, outcome);
    } finally {
      await sql`SELECT pg_advisory_unlock(hashtext('evalbox.outbox.partitions'))`.execute(conn);
    }
  });
  return outcome;
}

async function createAhead(conn: Kysely<Database>, options: PartitionOptions, now: Date, outcome: PartitionMaintenance): Promise<void> {
  for (let i = 0; i <= options.partitionsAhead; i++) {
    const day = new Date(utcDay(now).getTime() + i * DAY_MS);
    const name = partitionName(day);
    const dayText = day.toISOString().slice(0, 10);
    try {
      const exists = await sql<{ name: string | null }>`SELECT to_regclass(${name})::text AS name`.execute(conn);
      if (exists.rows[0]?.name) continue;
      // Rows of that day already in the default partition would make the new partition's
      // constraint fail; they stay readable there and are retired by expireDefaultRows.
      const inDefault = await sql<{ one: number }>`
        SELECT 1 AS one FROM outbox_default WHERE created_at >= ${dayText}::date AND created_at < ${dayText}::date + 1 LIMIT 1`.execute(conn);
      if (inDefault.rows.length > 0) {
        outcome.failed.push({ partition: name, error: 'rows of this day are in outbox_default' });
        continue;
      }
      const created = await withShortLock(conn, options, (trx) => sql<{ n: number }>`SELECT outbox_create_partitions(${dayText}::date, 1) AS n`.execute(trx));
      if (created.rows[0]?.n) outcome.created.push(name);
    } catch (error) {
      outcome.failed.push({ partition: name, error: (error as Error).message });
    }
  }
}

async function dropExpired(conn: Kysely<Database>, options: PartitionOptions, now: Date, outcome: PartitionMaintenance): Promise<void> {
  const cutoff = now.getTime() - options.retentionHours * 3_600_000;
  const { rows: partitions } = await sql<{ name: string }>`
    SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'outbox'::regclass AND c.relname ~ '^outbox_p[0-9]{8}$' ORDER BY 1`.execute(conn);
  for (const { name } of partitions) {
    const day = Date.UTC(Number(name.slice(8, 12)), Number(name.slice(12, 14)) - 1, Number(name.slice(14, 16)));
    if (day + DAY_MS > cutoff) continue; // its upper bound is still inside the retention window
    if ((await pendingIn(conn, name)).rows.length > 0) {
      outcome.kept.push(name);
      continue;
    }
    try {
      const dropped = await withShortLock(conn, options, async (trx) => {
        // Lock first, then look again: a late insert that committed after the look above is
        // seen now, and none can start until the drop commits.
        await sql`LOCK TABLE outbox, ${sql.table(name)} IN ACCESS EXCLUSIVE MODE`.execute(trx);
        if ((await pendingIn(trx, name)).rows.length > 0) return false;
        await sql`DROP TABLE ${sql.table(name)}`.execute(trx);
        return true;
      });
      (dropped ? outcome.dropped : outcome.kept).push(name);
    } catch (error) {
      outcome.failed.push({ partition: name, error: (error as Error).message });
    }
  }
}

/** Deletes rows of outbox_default past the retention window that every shard has published. */
async function expireDefaultRows(conn: Kysely<Database>, options: PartitionOptions, now: Date, outcome: PartitionMaintenance): Promise<void> {
  const cutoff = new Date(now.getTime() - options.retentionHours * 3_600_000);
  await sql`
    DELETE FROM outbox_default o USING relay_leases l
    WHERE l.shard = o.shard AND (o.xid, o.seq) <= (l.cursor_xid, l.cursor_seq) AND o.created_at < ${cutoff}`.execute(conn);
  const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM outbox_default`.execute(conn);
  outcome.defaultRows = Number(rows[0]?.n ?? 0);
}
