// `evalbox outbox …` as an operator runs it, against a database with published, pending and
// parked rows.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { sql } from 'kysely';
import { insertOutboxEvents } from '../src/events.js';
import { createTestDatabase, type TestDatabase } from './helpers.js';

describe('evalbox outbox', () => {
  let database: TestDatabase;
  const cli = (...args: string[]) => {
    const r = spawnSync('node', ['bin/evalbox.js', 'outbox', ...args, '--database-url', database.url], { encoding: 'utf8' });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, json: () => JSON.parse(r.stdout) as unknown };
  };
  const insert = (topic: string, key: string, n: number) =>
    database.db.transaction().execute((trx) => insertOutboxEvents(trx, [{ topic, key, type: 'test.event', source: '/test', data: { n } }]));

  beforeAll(async () => {
    database = await createTestDatabase({ max: 4 });
    for (let n = 0; n < 3; n++) await insert('events', 'app-1', n);
    // The cursor passes the first two: they are published, the third is pending.
    const second = (await sql<{ xid: string; seq: string }>`SELECT xid::text, seq::text FROM outbox ORDER BY xid, seq OFFSET 1 LIMIT 1`.execute(database.db))
      .rows[0];
    await sql`INSERT INTO relay_leases (shard, owner, epoch, expires_at, cursor_xid, cursor_seq, published_at) VALUES (0, 'r1', 1, now() + interval '1 minute', ${second?.xid}::xid8, ${second?.seq}::bigint, now())`.execute(
      database.db,
    );
    await insert('scores', 'app-2', 9);
    await sql`INSERT INTO outbox_parked (id, seq, xid, shard, topic, key, type, source, headers, payload, created_at, error_code, error_message)
              VALUES ('00000000-0000-7000-8000-0000000000c1', 999, '1', 0, 'events', 'app-1', 'test.event', '/test', '{}', '{"n":"parked"}', now(), 'ERR_MSG_SIZE_TOO_LARGE', 'too large')`.execute(
      database.db,
    );
  });
  afterAll(async () => database.drop());

  it('backlog shows pending events and the oldest age per topic', () => {
    const r = cli('backlog', '--json');
    expect(r.status).toBe(0);
    expect(r.json()).toEqual([expect.objectContaining({ topic: 'events', pending: '1' }), expect.objectContaining({ topic: 'scores', pending: '1' })]);
    const table = cli('backlog');
    expect(table.stdout).toMatch(/topic\s+pending\s+oldest_age_seconds/);
  });

  it('oldest lists the pending events in order with their horizon state', () => {
    const rows = cli('oldest', '--json', '--limit', '5').json() as { topic: string; above_horizon: boolean }[];
    expect(rows.map((r) => r.topic)).toEqual(['events', 'scores']);
    expect(rows.every((r) => r.above_horizon === false)).toBe(true);
  });

  it('key shows one key’s history with published, pending and parked states', () => {
    const rows = cli('key', 'app-1', '--json').json() as { state: string }[];
    expect(rows.map((r) => r.state)).toEqual(['published', 'published', 'pending']);
  });

  it('throughput counts published events per minute', () => {
    const rows = cli('throughput', '--json').json() as { topic: string; published: string }[];
    expect(rows).toEqual([expect.objectContaining({ topic: 'events', published: '2' })]);
  });

  it('horizon names the backend holding the horizon back', async () => {
    const client = await database.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('CREATE TEMP TABLE hold (x int)');
      const own = (await client.query<{ pid: number; xid: string }>('SELECT pg_backend_pid() AS pid, pg_current_xact_id()::text AS xid')).rows[0];
      const rows = cli('horizon', '--json').json() as { pid: number; xid: string; age_seconds: number }[];
      expect(rows).toHaveLength(1);
      // The horizon is cluster-wide: it is this transaction, unless another test's is older.
      const [blocker] = rows;
      expect(blocker?.pid === own?.pid || Number(blocker?.xid) < Number(own?.xid)).toBe(true);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });

  it('parked lists parked rows; redrive requeues one with the same event id, once', async () => {
    expect(cli('parked', '--json').json()).toEqual([
      expect.objectContaining({ id: '00000000-0000-7000-8000-0000000000c1', error_code: 'ERR_MSG_SIZE_TOO_LARGE' }),
    ]);
    const first = cli('redrive', '00000000-0000-7000-8000-0000000000c1', '--json');
    expect(first.status).toBe(0);
    expect(first.json()).toEqual({ redriven: ['00000000-0000-7000-8000-0000000000c1'] });
    const again = cli('redrive', '00000000-0000-7000-8000-0000000000c1');
    expect(again.status).toBe(1);
    const copies = await database.db.selectFrom('outbox').select(['id', 'payload']).where('id', '=', '00000000-0000-7000-8000-0000000000c1').execute();
    expect(copies).toEqual([{ id: '00000000-0000-7000-8000-0000000000c1', payload: { n: 'parked' } }]);
  });

  it('answers bad usage with exit code 2', () => {
    expect(cli('nothing').status).toBe(2);
    expect(cli('key').status).toBe(2);
    expect(cli('redrive', 'not-an-id').status).toBe(2);
  });
});
