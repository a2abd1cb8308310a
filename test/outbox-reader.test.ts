// The relay's read of a shard against the real Postgres: a backlog the statistics have not seen
// is read by an ordered index scan that stops after one batch, never fetched whole and sorted.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Database } from '../src/db/index.js';
import { readBatchBelowHorizon } from '../outbox-relay/sql.js';
import { createTestDatabase, type TestDatabase } from './helpers.js';
import { waitBelowHorizon } from './relay-helpers.js';

describe('outbox reader', () => {
  let database: TestDatabase;

  beforeAll(async () => {
    database = await createTestDatabase({ max: 2 });
  });
  afterAll(async () => database.drop());

  it('reads a 20,000-row unanalyzed backlog in (xid, seq) order through the index, without a sort', async () => {
    // Rows the statistics know, all published: the cursor sits at the last of them, where the
    // planner's histogram ends (a reader starting at cursor 0 would hide the misestimate).
    await sql`INSERT INTO outbox (id, shard, topic, key, type, source, payload)
              SELECT gen_random_uuid(), 0, 't', 'k' || (i % 7), 'test.event', '/test', jsonb_build_object('n', i)
              FROM generate_series(1, 5000) i`.execute(database.db);
    await sql`ANALYZE outbox`.execute(database.db);
    const { rows: published } = await sql<{ xid: string; seq: string }>`SELECT xid::text, max(seq)::text AS seq FROM outbox GROUP BY xid`.execute(database.db);
    const cursor = published[0] as { xid: string; seq: string };
    // One transaction, as a burst after an outage looks: no statistics cover these rows yet.
    await sql`INSERT INTO outbox (id, shard, topic, key, type, source, payload)
              SELECT gen_random_uuid(), 0, 't', 'k' || (i % 7), 'test.event', '/test', jsonb_build_object('n', i)
              FROM generate_series(1, 20000) i`.execute(database.db);
    // The read returns only rows below the cluster's snapshot horizon; an open transaction of
    // another test file (some hold one on purpose) would hide the whole backlog.
    await waitBelowHorizon(database);

    // One connection that reports every plan it runs (auto_explain, nested statements included).
    const plans: string[] = [];
    const pool = new pg.Pool({ connectionString: database.url, max: 1 });
    pool.on('connect', (client) => {
      client.on('notice', (notice) => plans.push(notice.message ?? ''));
    });
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    try {
      await sql`LOAD 'auto_explain'`.execute(db);
      await sql`SET auto_explain.log_min_duration = 0`.execute(db);
      await sql`SET auto_explain.log_nested_statements = on`.execute(db);
      await sql`SET client_min_messages = log`.execute(db);

      // Eight reads on one connection, all through the one generic plan the connection keeps.
      const batches = [];
      let from = cursor;
      for (let read = 0; read < 8; read++) {
        const batch = await readBatchBelowHorizon(db, 0, from, 250, 64 * 1024 * 1024);
        const last = batch[batch.length - 1];
        if (!last) throw new Error('no rows read');
        batches.push(...batch);
        from = { xid: last.xid, seq: last.seq };
      }

      const seqs = batches.map((row) => Number(row.seq));
      expect(seqs).toHaveLength(2000);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      expect(new Set(seqs).size).toBe(2000);
      expect(seqs[0]).toBe(Number(cursor.seq) + 1);

      // A plan kept per connection needs PL/pgSQL and the forced generic plan: a SQL function's
      // body also shows $1 in its plan, but is planned anew on every call.
      const { rows: fn } = await sql<{ lanname: string; proconfig: string[] }>`
        SELECT l.lanname, p.proconfig FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        WHERE p.oid = 'outbox_read_batch(integer, xid8, bigint, integer, bigint)'::regprocedure`.execute(db);
      expect(fn).toEqual([{ lanname: 'plpgsql', proconfig: expect.arrayContaining(['enable_sort=off', 'plan_cache_mode=force_generic_plan']) }]);

      const readPlans = plans.filter((plan) => plan.includes('ORDER BY o.xid, o.seq'));
      expect(readPlans).toHaveLength(8);
      for (const plan of readPlans) {
        expect(plan).toMatch(/Index Scan using \S*shard_xid_seq_idx/);
        // the generic plan (parameters, not this read's values), the one the relay's connections keep
        expect(plan).toMatch(/shard = \$1\b/);
        expect(plan).not.toMatch(/\bSort\s+\(/);
      }
    } finally {
      await db.destroy();
    }
  });
});
