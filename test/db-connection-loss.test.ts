// A database connection that dies while a client is checked out of the pool (the server
// restarts, an admin terminates the backend) must not crash the process: the error surfaces on
// the next query of that client, which the caller classifies as retryable.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from './helpers.js';

describe('connection loss', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase({ max: 2 });
  });
  afterAll(async () => {
    await database.drop();
  });

  it('a backend terminated while its client is checked out and idle does not crash the process', async () => {
    const crashes: unknown[] = [];
    const onUncaught = (error: unknown) => crashes.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      const client = await database.pool.connect();
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const admin = new pg.Client({ connectionString: database.url });
      await admin.connect();
      await admin.query('SELECT pg_terminate_backend($1)', [rows[0]?.pid]);
      await admin.end();
      await new Promise((resolve) => setTimeout(resolve, 500));
      await expect(client.query('SELECT 1')).rejects.toThrow();
      client.release(true);
      // The pool hands out a fresh connection afterwards.
      const again = await database.pool.query<{ one: number }>('SELECT 1 AS one');
      expect(again.rows[0]?.one).toBe(1);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(crashes).toEqual([]);
  });
});
