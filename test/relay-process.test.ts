// The relay as real processes: failover after kill -9 of the leader, and SIGTERM drain.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { sql } from 'kysely';
import { insertOutboxEvents } from '../src/events.js';
import { createTestDatabase, kafkaBrokers, waitFor, type TestDatabase } from './helpers.js';
import { collectTopic, createTopic } from './relay-helpers.js';

function spawnRelay(database: TestDatabase, topic: string): ChildProcess & { output: () => string } {
  let output = '';
  const child = spawn(
    'node',
    [
      'bin/evalbox.js',
      'relay',
      '--database-url',
      database.url,
      '--kafka-brokers',
      kafkaBrokers(),
      '--lease-ttl-ms',
      '2000',
      '--heartbeat-ms',
      '400',
      '--batch-size',
      '100',
    ],
    {
      env: { ...process.env, EVALBOX_TOPIC_EVENTS: topic, EVALBOX_TOPIC_SCORES: `${topic}.scores`, EVALBOX_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  return Object.assign(child, { output: () => output });
}

const exitOf = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (code) => resolve(code))));

describe('relay processes', () => {
  let database: TestDatabase;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    database = await createTestDatabase({ max: 10 });
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await database.drop();
  });

  const lease = () => database.db.selectFrom('relay_leases').selectAll().where('shard', '=', 0).executeTakeFirst();
  const insert = (topic: string, n: number) =>
    database.db.transaction().execute((trx) => insertOutboxEvents(trx, [{ topic, key: `k${n % 5}`, type: 'test.event', source: '/test', data: { n } }]));

  it('guarantee 2: a standby takes over within 5 s of the leader’s kill -9, with no loss and only bounded duplicates', async () => {
    const topic = await createTopic();
    const collector = await collectTopic(topic);
    try {
      const a = spawnRelay(database, topic);
      children.push(a);
      await waitFor(async () => (await lease())?.owner?.includes(`-${a.pid}-`), { what: 'relay A to lead', timeoutMs: 30_000 });
      const b = spawnRelay(database, topic);
      children.push(b);
      await waitFor(() => b.output().includes('relay started'), { what: 'relay B to start', timeoutMs: 30_000 });

      let n = 0;
      let writing = true;
      const writer = (async () => {
        while (writing) await insert(topic, n++);
      })();
      await waitFor(() => collector.received.length > 200, { what: 'some traffic through A' });
      const before = await lease();
      a.kill('SIGKILL');
      const killedAt = Date.now();
      const takeover = await waitFor(
        async () => {
          const l = await lease();
          return l && l.owner?.includes(`-${b.pid}-`) && Number(l.epoch) > Number(before?.epoch) ? Date.now() - killedAt : undefined;
        },
        { what: 'B to take over', timeoutMs: 10_000 },
      );
      expect(takeover).toBeLessThan(5_000);
      await new Promise((r) => setTimeout(r, 500));
      writing = false;
      await writer;

      const ids = (await database.db.selectFrom('outbox').select('id').execute()).map((r) => r.id);
      await waitFor(() => new Set(collector.received.map((m) => m.ceId)).size >= ids.length, { what: 'every event on Kafka', timeoutMs: 30_000 });
      expect(new Set(collector.received.map((m) => m.ceId))).toEqual(new Set(ids));
      // Duplicates only from the batch A had in flight: at most one batch.
      expect(collector.received.length - ids.length).toBeLessThanOrEqual(100);
      b.kill('SIGTERM');
      expect(await exitOf(b)).toBe(0);
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
