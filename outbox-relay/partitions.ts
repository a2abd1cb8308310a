// Retention without DELETE: daily outbox partitions are created ahead of time and dropped whole
// once they are older than the retention window AND every row in them is behind its shard's
// cursor. No row is ever deleted, so there is no vacuum churn on the hot table.
import { sql } from 'kysely';
import type { Db } from '../src/db/index.js';

export interface PartitionMaintenance {
  created: string[];
  dropped: string[];
  /** Old partitions kept because they still hold unpublished rows. */
  kept: string[];
  /** Days whose partition could not be created (e.g. the default partition holds rows of that day). */
  failed: { partition: string; error: string }[];
}

const DAY_MS = 86_400_000;
const partitionName = (day: Date) => `outbox_p${day.toISOString().slice(0, 10).replace(/-/g, '')}`;
const utcDay = (at: Date) => new Date(Math.floor(at.getTime() / DAY_MS) * DAY_MS);

export async function maintainPartitions(db: Db, options: { retentionHours: number; partitionsAhead: number; now?: Date }): Promise<PartitionMaintenance> {
  const now = options.now ?? new Date();
  const outcome: PartitionMaintenance = { created: [], dropped: [], kept: [], failed: [] };
  await db.connection().execute(async (conn) => {
    // One maintainer at a time across relays; the others skip this round.
    const { rows } = await sql<{ locked: boolean }>`SELECT pg_try_advisory_lock(hashtext('evalbox.outbox.partitions')) AS locked`.execute(conn);
    if (!rows[0]?.locked) return;
    try {
      for (let i = 0; i <= options.partitionsAhead; i++) {
        const day = new Date(utcDay(now).getTime() + i * DAY_MS);
        const name = partitionName(day);
        try {
          const created = await sql<{ n: number }>`SELECT outbox_create_partitions(${day.toISOString().slice(0, 10)}::date, 1) AS n`.execute(conn);
          if (created.rows[0]?.n) outcome.created.push(name);
        } catch (error) {
          outcome.failed.push({ partition: name, error: (error as Error).message });
        }
      }

      const cutoff = now.getTime() - options.retentionHours * 3_600_000;
      const { rows: partitions } = await sql<{ name: string }>`
        SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'outbox'::regclass AND c.relname ~ '^outbox_p[0-9]{8}$' ORDER BY 1`.execute(conn);
      for (const { name } of partitions) {
        const day = Date.UTC(Number(name.slice(8, 12)), Number(name.slice(12, 14)) - 1, Number(name.slice(14, 16)));
        if (day + DAY_MS > cutoff) continue; // its upper bound is still inside the retention window
        // A row is still needed when its shard has no cursor yet or the cursor is before it.
        const pending = await sql<{ one: number }>`
          SELECT 1 AS one FROM ${sql.table(name)} o LEFT JOIN relay_leases l ON l.shard = o.shard
          WHERE l.shard IS NULL OR (o.xid, o.seq) > (l.cursor_xid, l.cursor_seq) LIMIT 1`.execute(conn);
        if (pending.rows.length > 0) {
          outcome.kept.push(name);
          continue;
        }
        // DROP takes a brief ACCESS EXCLUSIVE lock on the parent; bound the wait so writers are
        // never queued behind it for long (a timeout just retries at the next round).
        try {
          await sql`SET lock_timeout = '2s'`.execute(conn);
          await sql`DROP TABLE ${sql.table(name)}`.execute(conn);
          outcome.dropped.push(name);
        } catch (error) {
          outcome.failed.push({ partition: name, error: (error as Error).message });
        } finally {
          await sql`RESET lock_timeout`.execute(conn);
        }
      }
    } finally {
      await sql`SELECT pg_advisory_unlock(hashtext('evalbox.outbox.partitions'))`.execute(conn);
    }
  });
  return outcome;
}
