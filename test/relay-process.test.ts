// The relay as real processes, with the default lease timings: failover after kill -9 of the
// leader, a leader paused with SIGSTOP past its lease, and SIGTERM drain.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { ChildProcess } from 'node:child_process';
import { sql } from 'kysely';
import { insertOutboxEvents } from '../src/events.js';
import { createTestDatabase, exitOf, waitFor, type TestDatabase } from './helpers.js';
import { collectTopic, createCountedKeyTable, createTopic, expectNoOlderEventAfterNewer, spawnRelay, writeCounted } from './relay-helpers.js';

describe('relay processes', () => {
  let database: TestDatabase;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    database = await createTestDatabase({ max: 10 });
    await createCountedKeyTable(database);
  });
  afterAll(async () => {
    for (const c of children) {
      if (c.exitCode === null) {
        c.kill('SIGCONT');
        c.kill('SIGKILL');
      }
    }
    await database.drop();
  });

  const lease = () => database.db.selectFrom('relay_leases').selectAll().where('shard', '=', 0).executeTakeFirst();
  const insert = (topic: string, n: number) =>
    database.db.transaction().execute((trx) => insertOutboxEvents(trx, [{ topic, key: `k${n % 5}`, type: 'test.event', source: '/test', data: { n } }]));
  const leaderPid = async () => /-(\d+)-[0-9a-f]+$/.exec((await lease())?.owner ?? '')?.[1];

  it('guarantee 2: after kill -9 of the leader a standby publishes new events once the lease expires (default timings), with no loss and duplicates from one batch at most', async () => {
    await sql`TRUNCATE outbox, relay_leases`.execute(database.db);
    const topic = await createTopic();
    const collector = await collectTopic(topic);
    const relays: ChildProcess[] = [];
    let writing = false;
    let writer: Promise<void> | undefined;
    try {
      const a = spawnRelay(database, topic);
      relays.push(a);
      children.push(a);
      await waitFor(async () => (await leaderPid()) === String(a.pid), { what: 'relay A to lead', timeoutMs: 30_000 });
      const b = spawnRelay(database, topic);
      relays.push(b);
      children.push(b);
      await waitFor(() => b.output().includes('relay started'), { what: 'relay B to start', timeoutMs: 30_000 });

      let n = 0;
      writing = true;
      writer = (async () => {
        while (writing) await insert(topic, n++);
      })();
      await waitFor(() => collector.received.length > 200, { what: 'some traffic through A' });
      a.kill('SIGKILL');
      const killedAt = Date.now();
      const firstAfterKill = n + 1; // written after the kill: only B can publish it
      const firstPublish = await waitFor(() => collector.received.find((m) => (JSON.parse(m.value) as { n: number }).n >= firstAfterKill)?.receivedAt, {
        what: 'B to publish an event written after the kill',
        timeoutMs: 15_000,
      });
      process.stdout.write(`kill -9 of the leader: the standby published ${firstPublish - killedAt} ms after the kill\n`);
      // Lease TTL 3 s plus a heartbeat (1 s), then the new producer's initTransactions and a batch:
      // about 4-5 s on a quiet machine; 10 s leaves room for a loaded one and still tells a takeover
      // by lease expiry from one that waited out the 30 s transaction timeout.
      expect(firstPublish - killedAt).toBeLessThan(10_000);
      writing = false;
      await writer;

      const ids = (await database.db.selectFrom('outbox').select('id').execute()).map((r) => r.id);
      await waitFor(() => new Set(collector.received.map((m) => m.ceId)).size >= ids.length, { what: 'every event on Kafka', timeoutMs: 30_000 });
      expect(new Set(collector.received.map((m) => m.ceId))).toEqual(new Set(ids));
      // Duplicates only from the batch A had committed to Kafka but not yet to its cursor: at most one batch.
      expect(collector.received.length - ids.length).toBeLessThanOrEqual(100);
      b.kill('SIGTERM');
      expect(await exitOf(b)).toBe(0);
    } finally {
      // A failure above must not leave a leader behind for the next test, nor a writer running.
      writing = false;
      await writer?.catch(() => {});
      for (const r of relays) if (r.exitCode === null) r.kill('SIGKILL');
      await Promise.all(relays.map(exitOf));
      await collector.stop();
    }
  });

  it('finding 2: a leader paused inside its cursor update (its transaction open, the lease row locked) is cut off by the database; a standby takes over', async () => {
    await sql`TRUNCATE outbox, relay_leases`.execute(database.db);
    const topic = await createTopic();
    const collector = await collectTopic(topic);
    // The leader's cursor update takes 2 s (once): wide enough to pause the process inside it,
    // with the UPDATE done and the lease row locked, before its COMMIT is sent.
    await sql`CREATE TABLE slow_cursor_once (done boolean NOT NULL DEFAULT false)`.execute(database.db);
    await sql`INSERT INTO slow_cursor_once VALUES (false)`.execute(database.db);
    await sql`
      CREATE FUNCTION slow_cursor() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NOT (SELECT done FROM slow_cursor_once) THEN
          UPDATE slow_cursor_once SET done = true;
          PERFORM pg_sleep(2);
        END IF;
        RETURN NEW;
      END $$`.execute(database.db);
    await sql`CREATE TRIGGER slow_cursor BEFORE UPDATE OF cursor_xid ON relay_leases FOR EACH ROW EXECUTE FUNCTION slow_cursor()`.execute(database.db);
    const relays = [spawnRelay(database, topic), spawnRelay(database, topic)];
    children.push(...relays);
    let leader: ChildProcess | undefined;
    try {
      await waitFor(() => relays.every((r) => r.output().includes('relay started')), { what: 'both relays to start', timeoutMs: 30_000 });
      await insert(topic, 0);
      const pid = await waitFor(
        async () =>
          (
            await sql<{ pid: number }>`
              SELECT pid FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'evalbox-relay' AND state = 'active' AND query LIKE '%SET cursor_xid%'`.execute(
              database.db,
            )
          ).rows.length > 0 && (await leaderPid()),
        { what: 'the leader inside its cursor update', timeoutMs: 30_000, intervalMs: 20 },
      );
      leader = relays.find((r) => String(r.pid) === pid);
      if (!leader) throw new Error(`the leader (pid ${String(pid)}) is not one of this test's relays`);
      leader.kill('SIGSTOP');
      // The statement ends, the transaction stays open and holds the lease row (and the horizon).
      const stoppedAt = Date.now();
      await insert(topic, 1);
      // The standby can claim only once the database has ended the zombie's transaction.
      await waitFor(async () => (await leaderPid()) !== pid, { what: 'the standby to take the shard over', timeoutMs: 30_000 });
      await waitFor(() => collector.received.some((m) => (JSON.parse(m.value) as { n: number }).n === 1), {
        what: 'the standby to publish the row written after the pause',
        timeoutMs: 30_000,
      });
      process.stdout.write(`zombie in its cursor update: standby published ${Date.now() - stoppedAt} ms after the pause\n`);
    } finally {
      // Ended before the trigger is dropped (the zombie's open transaction would hold the DROP
      // up), and before the next test (the standby would go on leading the shard).
      leader?.kill('SIGCONT');
      for (const r of relays) r.kill('SIGKILL');
      await Promise.all(relays.map(exitOf));
      await collector.stop();
      await sql`DROP TRIGGER IF EXISTS slow_cursor ON relay_leases`.execute(database.db);
      await sql`DROP FUNCTION IF EXISTS slow_cursor()`.execute(database.db);
      await sql`DROP TABLE IF EXISTS slow_cursor_once`.execute(database.db);
    }
  });

  it('finding 2: a leader paused (SIGSTOP) past its lease and resumed after a standby took over never delivers an older event after a newer one', async () => {
    await sql`TRUNCATE outbox, relay_leases, test_key_counter`.execute(database.db);
    const topic = await createTopic();
    const collector = await collectTopic(topic);
    const relays = [spawnRelay(database, topic), spawnRelay(database, topic)];
    children.push(...relays);
    try {
      await waitFor(async () => (await leaderPid()) !== undefined, { what: 'a leader', timeoutMs: 30_000 });
      await waitFor(() => relays.every((r) => r.output().includes('relay started')), { what: 'both relays to start', timeoutMs: 30_000 });
      const keys = ['k0', 'k1', 'k2', 'k3', 'k4'];
      let writing = true;
      const writer = (async () => {
        while (writing) await writeCounted(database, topic, keys, 7);
      })();
      // Pause the leader three times, each time while traffic flows, past its lease; resume it
      // after the other relay took over and published newer events of the same keys.
      for (let round = 0; round < 3; round++) {
        const pid = await leaderPid();
        const leader = relays.find((r) => String(r.pid) === pid) as ChildProcess;
        const before = await lease();
        await waitFor(async () => Number((await lease())?.cursor_seq) > Number(before?.cursor_seq) + 50, { what: 'traffic through the leader' });
        leader.kill('SIGSTOP');
        const paused = await lease();
        await waitFor(
          async () => {
            const now = await lease();
            return (await leaderPid()) !== pid && Number(now?.epoch) > Number(paused?.epoch) && Number(now?.cursor_seq) > Number(paused?.cursor_seq) + 50;
          },
          { what: 'the other relay to take over and publish', timeoutMs: 20_000 },
        );
        leader.kill('SIGCONT');
        await new Promise((r) => setTimeout(r, 2000));
      }
      writing = false;
      await writer;
      const ids = (await database.db.selectFrom('outbox').select('id').execute()).map((r) => r.id);
      await waitFor(() => new Set(collector.received.map((m) => m.ceId)).size >= ids.length, { what: 'every event on Kafka', timeoutMs: 30_000 });
      await new Promise((r) => setTimeout(r, 2000)); // a former leader's late batch would arrive now
      await expectNoOlderEventAfterNewer(database, collector.received);
      for (const r of relays) r.kill('SIGTERM');
      for (const r of relays) expect(await exitOf(r)).toBe(0);
    } finally {
      await collector.stop();
    }
  });

  it('guarantee 7: SIGTERM drains the in-flight batch, releases the lease and exits 0; the cursor never passes an unacknowledged row', async () => {
    await sql`TRUNCATE outbox, relay_leases`.execute(database.db);
    const topic = await createTopic();
    const collector = await collectTopic(topic);
    try {
      for (let i = 0; i < 300; i++) await insert(topic, i);
      const relay = spawnRelay(database, topic);
      children.push(relay);
      await waitFor(() => collector.received.length > 0, { what: 'the first messages', timeoutMs: 30_000 });
      relay.kill('SIGTERM');
      expect(await exitOf(relay)).toBe(0);
      expect(relay.output()).toMatch(/released shard lease/);
      const l = await lease();
      expect(l?.owner).toBeNull();
      const expired = await sql<{ expired: boolean }>`SELECT expires_at < now() AS expired FROM relay_leases WHERE shard = 0`.execute(database.db);
      expect(expired.rows).toEqual([{ expired: true }]);
      // Everything at or before the cursor is on Kafka.
      const behindCursor = await sql<{
        id: string;
      }>`SELECT o.id FROM outbox o, relay_leases l WHERE l.shard = 0 AND (o.xid, o.seq) <= (l.cursor_xid, l.cursor_seq)`.execute(database.db);
      await waitFor(() => collector.received.length >= behindCursor.rows.length, { what: 'the consumer to catch up' });
      const published = new Set(collector.received.map((m) => m.ceId));
      for (const { id } of behindCursor.rows) expect(published.has(id)).toBe(true);
    } finally {
      await collector.stop();
    }
  });
});
