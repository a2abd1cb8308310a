// The relay's housekeeping reads against the real Postgres: the horizon probe stays bounded
// whatever the backlog behind the horizon, and reports the age of what a long transaction hides.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { sql } from 'kysely';
import { horizonBlockedSeconds, horizonProbeQuery } from '../outbox-relay/sql.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  Plans?: PlanNode[];
}

/** Every row the plan's scans of outbox partitions produced or filtered out. */
function outboxRowsRead(node: PlanNode): number {
  const own =
    node['Relation Name']?.startsWith('outbox') === true
      ? ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0) + (node['Rows Removed by Index Recheck'] ?? 0)) * (node['Actual Loops'] ?? 1)
      : 0;
  return own + (node.Plans ?? []).reduce((sum, child) => sum + outboxRowsRead(child), 0);
}

describe('relay housekeeping probes', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase({ max: 4 });
  });
  afterAll(async () => database.drop());

  it('finding 7: the horizon probe reads at most 100 rows whatever the backlog behind the horizon, and reports the age of the oldest hidden row while a long transaction holds it', async () => {
    const start = { xid: '0', seq: '0' };
    // A long transaction that has taken an xid: every row committed after it sits above the horizon.
    const holder = new pg.Client({ connectionString: database.url, application_name: 'evalbox-test-horizon-holder' });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_current_xact_id()');
      const writtenAt = Date.now();
      await sql`
        INSERT INTO outbox (id, shard, topic, key, type, source, payload)
        SELECT gen_random_uuid(), 0, 't', 'k' || (n % 7), 'test.event', '/test', '{}' FROM generate_series(1, 5000) n`.execute(database.db);
      await new Promise((r) => setTimeout(r, 1_200));
      const hidden = await sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox WHERE xid >= pg_snapshot_xmin(pg_current_snapshot())`.execute(database.db);
      expect(hidden.rows[0]?.n).toBe(5000);

      const seconds = await horizonBlockedSeconds(database.db, 0, start);
      expect(seconds).toBeGreaterThanOrEqual(1.2 - 0.05);
      expect(seconds).toBeLessThanOrEqual((Date.now() - writtenAt) / 1000 + 0.5);

      // Counted by the executor, not timed: the probe's scans touch at most its 100 rows (one
      // more per partition at most, where a merge primes each input), not the 5,000.
      const { rows } = await sql<{ 'QUERY PLAN': { Plan: PlanNode }[] }>`EXPLAIN (ANALYZE, FORMAT JSON) ${horizonProbeQuery(0, start)}`.execute(database.db);
      const plan = rows[0]?.['QUERY PLAN'][0]?.Plan as PlanNode;
      const read = outboxRowsRead(plan);
      expect(read).toBeGreaterThanOrEqual(100);
      expect(read).toBeLessThanOrEqual(110);
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    // Nothing hidden any more (once no other transaction of the shared cluster holds the horizon): 0.
    await waitFor(async () => (await horizonBlockedSeconds(database.db, 0, start)) === 0, { what: 'the probe to report 0', timeoutMs: 60_000 });
  });
});
