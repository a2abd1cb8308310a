// The relay process's own connections to Postgres: a standby neither counts the backlog nor reads
// the outbox; a leader paused inside a transaction has it ended after the lease TTL; a statement
// that hangs on a lock is cut by statement_timeout and the relay recovers; every connection has
// TCP keepalive on (so a vanished peer is noticed, not waited on forever).
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { sql } from 'kysely';
import { insertOutboxEvents } from '../src/events.js';
import { claimLease } from '../outbox-relay/sql.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';
import { collectTopic, createTopic, spawnRelay, waitForPublished } from './relay-helpers.js';

const exitOf = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (code) => resolve(code))));

describe('relay process: its Postgres connections', () => {
  let database: TestDatabase;
  const children: ChildProcess[] = [];
  const clients: pg.Client[] = [];
  beforeAll(async () => {
    database = await createTestDatabase({ max: 6 });
  });
  afterEach(async () => {
    for (const c of children.splice(0)) {
      if (c.exitCode === null) {
        c.kill('SIGTERM');
        await exitOf(c);
      }
    }
    for (const c of clients.splice(0)) await c.end().catch(() => {});
  });
  afterAll(async () => database.drop());

  async function client(applicationName: string): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: database.url, application_name: applicationName });
    await c.connect();
    clients.push(c);
    return c;
  }
  const insert = (topic: string, n: number) =>
    database.db.transaction().execute((trx) => insertOutboxEvents(trx, [{ topic, key: `k${n}`, type: 'test.event', source: '/test', data: { n } }]));
  const leaderPid = async () =>
    /-(\d+)-[0-9a-f]+$/.exec((await database.db.selectFrom('relay_leases').select('owner').where('shard', '=', 0).executeTakeFirst())?.owner ?? '')?.[1];
  /** Statements of this database's backends that wait for a lock, other than the holder's. */
  const lockWaiters = async (holder: pg.Client) =>
    (
      await sql<{ query: string }>`
        SELECT query FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'
          AND pid <> ${(await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid ?? 0}`.execute(database.db)
    ).rows.map((r) => r.query);

  it('finding 7: a standby neither counts the backlog nor reads the outbox (a lock on outbox queues none of its statements); once it leads, it does both', async () => {
    await sql`TRUNCATE outbox, relay_leases`.execute(database.db);
    const topic = await createTopic();
    for (let n = 0; n < 10; n++) await insert(topic, n);
    // Shard 0 is led by another relay; partition maintenance belongs to another maintainer (its
    // lock held here), so nothing of this relay has a reason to touch outbox while it stands by.
    await claimLease(database.db, 0, 'another-relay', 600_000);
    const maintainer = await client('evalbox-test-maintainer');
    await maintainer.query(`SELECT pg_advisory_lock(hashtext('evalbox.outbox.partitions'))`);
    const relay = spawnRelay(database, topic);
    children.push(relay);
    await waitFor(() => relay.output().includes('relay started'), { what: 'the relay to start', timeoutMs: 30_000 });

    const holder = await client('evalbox-test-lock-holder');
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE');
    // Longer than the backlog refresh period (5 s) and many heartbeats.
    const standbyWaits = new Set<string>();
    for (const until = Date.now() + 8_000; Date.now() < until;) {
      for (const q of await lockWaiters(holder)) standbyWaits.add(q);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect([...standbyWaits]).toEqual([]);

    // The same watch sees a leader's statements: release the lease, and the relay's reads and
    // its backlog count queue behind the lock.
    await sql`UPDATE relay_leases SET owner = NULL, expires_at = '-infinity' WHERE shard = 0`.execute(database.db);
    const leaderWaits = new Set<string>();
    await waitFor(
      async () => {
        for (const q of await lockWaiters(holder)) leaderWaits.add(q);
        const all = [...leaderWaits].join('\n');
        return all.includes('outbox_read_batch') && all.includes('outbox_live_shards');
      },
      { what: 'the leader to read the outbox and count the backlog', timeoutMs: 30_000, intervalMs: 100 },
    );
    await holder.query('ROLLBACK');
    const collector = await collectTopic(topic);
    try {
      await waitForPublished(database, undefined, () => collector.received.length >= 10, { what: 'the ten rows', timeoutMs: 30_000 });
    } finally {
      await collector.stop();
    }
  });

  it('finding 2: a leader paused (SIGSTOP) inside its cursor update holds neither the shard nor the horizon for longer than the lease TTL: a standby takes over and publishes', async () => {
    await sql`TRUNCATE outbox, relay_leases`.execute(database.db);
    const topic = await createTopic();
    const collector = await collectTopic(topic);
    // A slow cursor update (one second), so that the pause lands inside the leader's transaction
    // (the trigger stays: dropping it would wait for the paused transaction's lock).
    await sql`CREATE OR REPLACE FUNCTION test_slow_cursor() RETURNS trigger LANGUAGE plpgsql AS $$
              BEGIN IF NEW.cursor_seq IS DISTINCT FROM OLD.cursor_seq THEN PERFORM pg_sleep(1); END IF; RETURN NEW; END $$`.execute(database.db);
    await sql`CREATE OR REPLACE TRIGGER test_slow_cursor BEFORE UPDATE ON relay_leases FOR EACH ROW EXECUTE FUNCTION test_slow_cursor()`.execute(database.db);
    try {
      const first = spawnRelay(database, topic);
      children.push(first);
      await waitFor(async () => (await leaderPid()) === String(first.pid), { what: 'the first relay to lead', timeoutMs: 30_000 });
      const standby = spawnRelay(database, topic);
      children.push(standby);
      await waitFor(() => standby.output().includes('relay started'), { what: 'the standby to start', timeoutMs: 30_000 });
      await insert(topic, 1);
      // The leader's cursor update is running (sleeping in the trigger): pause the leader there.
      await waitFor(
        async () =>
          (
            await sql<{ n: number }>`
              SELECT count(*)::int AS n FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'evalbox-relay' AND state = 'active' AND query LIKE '%UPDATE relay_leases SET cursor_xid%'`.execute(
              database.db,
            )
          ).rows[0]?.n === 1,
        { what: 'the leader inside its cursor update', timeoutMs: 60_000, intervalMs: 20 },
      );
      first.kill('SIGSTOP');
      try {
        await insert(topic, 2);
        // The standby publishes the row written after the pause (the first may come twice).
        await waitForPublished(database, undefined, () => collector.received.some((m) => (JSON.parse(m.value) as { n: number }).n === 2), {
          what: 'the standby to publish after the pause',
          timeoutMs: 30_000,
        });
      } finally {
        first.kill('SIGCONT');
      }
    } finally {
      await sql`DROP TRIGGER IF EXISTS test_slow_cursor ON relay_leases`.execute(database.db);
      await collector.stop();
    }
  });

  it('finding 7: a relay statement that hangs on a lock is cut by statement_timeout and the relay leads and publishes again after the release; every connection to Postgres has TCP keepalive on', async () => {
    await sql`TRUNCATE outbox, relay_leases`.execute(database.db);
    const topic = await createTopic();
    const collector = await collectTopic(topic);
    const relay = spawnRelay(database, topic, { EVALBOX_RELAY_STATEMENT_TIMEOUT_MS: '1500' });
    children.push(relay);
    try {
      await waitFor(async () => (await leaderPid()) === String(relay.pid), { what: 'the relay to lead', timeoutMs: 30_000 });

      // Keepalive: the kernel's keepalive timer runs on each of the process's sockets to Postgres
      // (the pool's and the LISTEN connection).
      const port = new URL(database.url).port;
      const { stdout } = await promisify(execFile)('ss', ['-tnpoH', 'state', 'established']);
      const sockets = stdout.split('\n').filter((line) => line.includes(`pid=${relay.pid},`) && new RegExp(`:${port}\\s`).test(line));
      expect(sockets.length).toBeGreaterThanOrEqual(2);
      expect(sockets.filter((line) => !line.includes('timer:(keepalive'))).toEqual([]);

      // An operator's transaction holds the lease row: the renewal waits on it, and is cut.
      const holder = await client('evalbox-test-lock-holder');
      await holder.query('BEGIN');
      await holder.query('SELECT * FROM relay_leases WHERE shard = 0 FOR UPDATE');
      try {
        await waitFor(() => /lease renewal[\s\S]*statement timeout|statement timeout[\s\S]*lease renewal/.test(relay.output()), {
          what: 'the renewal to be cut by the statement timeout',
          timeoutMs: 30_000,
        });
      } finally {
        await holder.query('ROLLBACK');
      }
      await insert(topic, 1);
      await waitForPublished(database, undefined, () => collector.received.length === 1, { what: 'the row, after the lock is released', timeoutMs: 30_000 });
      relay.kill('SIGTERM');
      expect(await exitOf(relay)).toBe(0);
    } finally {
      await collector.stop();
    }
  });
});
