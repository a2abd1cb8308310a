import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { migrateToLatest } from '../src/db/index.js';
import { createTestDatabase, type TestDatabase } from './helpers.js';

describe('migrations', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase({ max: 2 });
  });
  afterAll(async () => database.drop());

  it('applying them twice is a no-op', async () => {
    const { error, results } = await migrateToLatest(database.db);
    expect(error).toBeUndefined();
    expect(results).toEqual([]);
  });

  it('creates the outbox as a time-partitioned table with partitions around today', async () => {
    const partitions = await sql<{ name: string }>`
      SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'outbox'::regclass ORDER BY 1`.execute(database.db);
    const names = partitions.rows.map((r) => r.name);
    const today = new Date().toISOString().slice(0, 10).replace(/-/g, '');
    expect(names).toContain(`outbox_p${today}`);
    expect(names).toContain('outbox_default');
  });
});
