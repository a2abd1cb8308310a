// The relay process's own connections to Postgres: a standby neither counts the backlog nor reads
// the outbox; a statement that hangs on a lock is cut by statement_timeout and the relay recovers;
// every connection has TCP keepalive on (so a vanished peer is noticed, not waited on forever). A
// leader paused inside a transaction: test/relay-process.test.ts.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { sql } from 'kysely';
import { insertOutboxEvents } from '../src/events.js';
import { claimLease } from '../outbox-relay/sql.js';
import { createTestDatabase, exitOf, waitFor, type TestDatabase } from './helpers.js';
import { collectTopic, createTopic, spawnRelay, waitForPublished } from './relay-helpers.js';

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

  it('finding 7: a relay statement that hangs on a lock is cut by statement_timeout and the relay leads and publishes again after the release; every connection to Postgres has TCP keepalive on', async () => {
    await sql`TRUNCATE outbox, relay_leases`.execute(database.db);
    const topic = await createTopic();
    const collector = await collectTopic(topic);
    const relay = spawnRelay(database, topic, { EVALBOX_RELAY_STATEMENT_TIMEOUT_MS: '1500' });
    children.push(relay);
    try {
      await waitFor(async () => (await leaderPid()) === String(relay.pid), { what: 'the relay to lead', timeoutMs: 30_000 });

      // Keepalive: the kernel's keepalive timer runs on each of the process's sockets to Postgres
      // (the pool's and the LISTEN connection). A socket with unacknowledged data shows its
      // retransmission timer instead ("timer:(on,…)"), which says nothing either way, so each
      // socket is judged from a sample in which its send queue is empty.
      const port = new URL(database.url).port;
      const idleTimers = new Map<string, string>(); // local address -> the line of an idle sample
      const seen = new Set<string>();
      for (let sample = 0; sample < 40 && (seen.size < 2 || idleTimers.size < seen.size); sample++) {
        if (sample > 0) await new Promise((resolve) => setTimeout(resolve, 50));
        const { stdout } = await promisify(execFile)('ss', ['-tnpoH', 'state', 'established']);
        const sockets = stdout.split('\n').filter((line) => line.includes(`pid=${relay.pid},`) && new RegExp(`:${port}\\s`).test(line));
        for (const line of sockets) {
          const [, sendQueue, local] = line.trim().split(/\s+/) as [string, string, string];
          seen.add(local);
          if (sendQueue === '0') idleTimers.set(local, line);
        }
      }
      expect(seen.size).toBeGreaterThanOrEqual(2);
      expect(idleTimers.size).toBe(seen.size);
      expect([...idleTimers.values()].filter((line) => !line.includes('timer:(keepalive'))).toEqual([]);

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
