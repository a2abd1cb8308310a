// The relay against the real Postgres and Kafka: gap safety, per-key order, fencing, parking,
// horizon-blocker reporting.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { createKafka } from '../src/kafka.js';
import { insertOutboxEvents } from '../src/events.js';
import { advanceCursor, claimLease, renewLease } from '../outbox-relay/sql.js';
import type { Relay } from '../outbox-relay/relay.js';
import { createTestDatabase, kafkaBrokers, uniqueName, waitFor, type TestDatabase } from './helpers.js';
import {
  collectTopic,
  createCountedKeyTable,
  createTopic,
  expectEveryKeyExactlyInCounterOrder,
  startTestRelay,
  waitForPublished,
  waitForRelay,
  writeCounted,
} from './relay-helpers.js';

const event = (topic: string, key: string, data: Record<string, unknown>) => ({ topic, key, type: 'test.event', source: '/test', data });

describe('outbox relay', () => {
  let database: TestDatabase;
  let relay: Relay | undefined;
  const collectors: { stop(): Promise<void> }[] = [];

  beforeAll(async () => {
    database = await createTestDatabase({ max: 40 });
  });
  afterEach(async () => {
    await relay?.stop();
    relay = undefined;
    await Promise.all(collectors.splice(0).map((c) => c.stop()));
    await sql`TRUNCATE outbox, relay_leases, outbox_parked; UPDATE outbox_settings SET shards = 1`.execute(database.db);
  });
  afterAll(async () => database.drop());

  async function collect(topic: string) {
    const c = await collectTopic(topic);
    collectors.push(c);
    return c.received;
  }

  it('guarantee 2: a transaction that took its xid early and commits late is published, never skipped', async () => {
    const topic = await createTopic();
    const received = await collect(topic);
    relay = startTestRelay(database);
    await relay.start();

    const late = await database.pool.connect();
    try {
      await late.query('BEGIN');
      await late.query(
        `INSERT INTO outbox (id, shard, topic, key, type, source, payload) VALUES ('00000000-0000-7000-8000-00000000000a', outbox_shard_of('k'), $1, 'k', 'test.event', '/test', '{"n":"late"}')`,
        [topic],
      );
      // Later transactions commit first.
      for (let n = 0; n < 5; n++) await database.db.transaction().execute((trx) => insertOutboxEvents(trx, [event(topic, 'k', { n })]));
      // They sit above the horizon while the early transaction runs: publishing them now would
      // move the cursor past the early row and lose it.
      await new Promise((r) => setTimeout(r, 700));
      expect(received).toHaveLength(0);
      await late.query('COMMIT');
    } finally {
      late.release();
    }
    await waitForPublished(database, relay, () => received.length >= 6, { what: 'six messages' });
    expect(received.map((m) => (JSON.parse(m.value) as { n: unknown }).n)).toEqual(['late', 0, 1, 2, 3, 4]);
    expect(received[0]?.ceId).toBe('00000000-0000-7000-8000-00000000000a');
  });

  it('guarantee 2: reads in numeric (xid, seq) order, also where the numbers gain a digit', async () => {
    await sql`ALTER TABLE outbox ALTER COLUMN seq RESTART WITH 95`.execute(database.db);
    const topic = await createTopic(undefined, 1);
    const received = await collect(topic);
    // One transaction, seq 95..104: a text comparison would put 100..104 first.
    await database.db.transaction().execute((trx) =>
      insertOutboxEvents(
        trx,
        Array.from({ length: 10 }, (_, n) => event(topic, 'k', { n })),
      ),
    );
    relay = startTestRelay(database, { batchSize: 4 });
    await relay.start();
    await waitForPublished(database, relay, () => received.length >= 10, { what: 'ten messages' });
    expect(received.map((m) => (JSON.parse(m.value) as { n: unknown }).n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('publishes CloudEvents binary-mode messages: key, JSON value, ce_* headers, traceparent', async () => {
    const topic = await createTopic();
    const received = await collect(topic);
    relay = startTestRelay(database);
    await relay.start();
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const [id] = await database.db
      .transaction()
      .execute((trx) => insertOutboxEvents(trx, [{ ...event(topic, 'app-1', { hello: 'world' }), headers: { traceparent } }]));
    await waitForPublished(database, relay, () => received.length === 1, { what: 'the message' });
    const m = received[0];
    expect(m?.key).toBe('app-1');
    expect(JSON.parse(m?.value ?? '')).toEqual({ hello: 'world' });
    expect(m?.headers).toMatchObject({ id, type: 'test.event', source: '/test', specversion: '1.0', traceparent, contentType: 'application/json' });
    expect(new Date(m?.headers.time ?? '').getTime()).toBeGreaterThan(0);
  });

  it.each([1, 4])(
    'guarantee 2: per-key order (by a per-key counter written with each row) holds across 1,200 events from 12 concurrent writers with %i shard(s)',
    async (shards) => {
      await sql`UPDATE outbox_settings SET shards = ${shards}`.execute(database.db);
      await createCountedKeyTable(database);
      await sql`TRUNCATE test_key_counter`.execute(database.db);
      const topic = await createTopic();
      const received = await collect(topic);
      relay = startTestRelay(database);
      await relay.start();
      await waitForRelay(database, relay, () => relay?.ownedShards().length === shards, { what: `the relay to lead ${shards} shards` });

      // 12 writers on 6 keys: two writers race on every key; the counter records the commit order.
      const writers = Array.from({ length: 12 }, async (_, writer) => {
        for (let n = 0; n < 100; n++) await writeCounted(database, topic, [`key-${writer % 6}`], 1);
      });
      await Promise.all(writers);
      await waitForPublished(database, relay, () => new Set(received.map((m) => m.ceId)).size >= 1200, { what: '1,200 distinct events', timeoutMs: 60_000 });
      await new Promise((r) => setTimeout(r, 500));
      await expectEveryKeyExactlyInCounterOrder(database, received);
    },
  );

  it('a zombie leader is fenced by the epoch: after a takeover, even by the same owner name, its cursor update and renewal change nothing', async () => {
    const zombie = await claimLease(database.db, 0, 'relay-x', 200);
    expect(zombie?.epoch).toBe('1');
    expect(await claimLease(database.db, 0, 'relay-x', 200)).toBeUndefined(); // still held
    await new Promise((r) => setTimeout(r, 350));
    // The same owner name again (a restarted process with a reused name): only the epoch differs.
    const standby = await claimLease(database.db, 0, 'relay-x', 5000);
    expect(standby?.epoch).toBe('2');
    expect(await advanceCursor(database.db, zombie!, { xid: '999999', seq: '999' }, [])).toBe(false);
    expect(await renewLease(database.db, zombie!, 5000)).toBe(false);
    const lease = await database.db.selectFrom('relay_leases').selectAll().where('shard', '=', 0).executeTakeFirstOrThrow();
    expect(lease).toMatchObject({ owner: 'relay-x', epoch: '2', cursor_xid: '0', cursor_seq: '0' });
    expect(await advanceCursor(database.db, standby!, { xid: '10', seq: '5' }, [])).toBe(true);
  });

  it('a relay whose lease is taken over stops working that shard', async () => {
    relay = startTestRelay(database);
    await relay.start();
    await waitFor(() => relay?.ownedShards().length === 1, { what: 'the relay to lead shard 0' });
    // Another owner takes the shard (as after a long pause of this relay): the epoch moves on.
    await sql`UPDATE relay_leases SET owner = 'other', epoch = epoch + 1, expires_at = now() + interval '1 minute' WHERE shard = 0`.execute(database.db);
    await waitFor(() => relay?.ownedShards().length === 0, { what: 'the relay to give the shard up' });
  });

  it('guarantee 5: an oversized row and a row with an illegal topic are parked while the rest flow', async () => {
    const topic = await createTopic();
    const received = await collect(topic);
    await database.db.transaction().execute((trx) => insertOutboxEvents(trx, [event(topic, 'a', { n: 1 })]));
    const big = JSON.stringify({ blob: 'x'.repeat(1_200_000) });
    await sql`INSERT INTO outbox (id, shard, topic, key, type, source, payload) VALUES ('00000000-0000-7000-8000-0000000000b1', outbox_shard_of('a'), ${topic}, 'a', 'test.event', '/test', ${big}::jsonb)`.execute(
      database.db,
    );
    await sql`INSERT INTO outbox (id, shard, topic, key, type, source, payload) VALUES ('00000000-0000-7000-8000-0000000000b2', outbox_shard_of('b'), 'not a legal topic!', 'b', 'test.event', '/test', '{}')`.execute(
      database.db,
    );
    await database.db.transaction().execute((trx) => insertOutboxEvents(trx, [event(topic, 'a', { n: 2 }), event(topic, 'b', { n: 3 })]));
    relay = startTestRelay(database);
    await relay.start();
    await waitForPublished(database, relay, () => received.length >= 3, { what: 'the three publishable messages' });
    // Key a keeps its order around the parked row; key b is not held up by it.
    expect(received.filter((m) => m.key === 'a').map((m) => (JSON.parse(m.value) as { n: unknown }).n)).toEqual([1, 2]);
    expect(received.filter((m) => m.key === 'b').map((m) => (JSON.parse(m.value) as { n: unknown }).n)).toEqual([3]);
    // The cursor and the parked rows are written after the Kafka transaction commits, so a
    // read_committed consumer can see the messages a moment before the parked rows exist.
    const parked = await waitFor(
      async () => {
        const rows = await database.db.selectFrom('outbox_parked').select(['id', 'error_code']).orderBy('seq').execute();
        return rows.length >= 2 && rows;
      },
      { what: 'the two parked rows' },
    );
    expect(parked).toEqual([
      { id: '00000000-0000-7000-8000-0000000000b1', error_code: 'ERR_MSG_SIZE_TOO_LARGE' },
      { id: '00000000-0000-7000-8000-0000000000b2', error_code: 'INVALID_TOPIC' },
    ]);
  });

  it('guarantee 5: a row the broker refuses for good (over the topic max.message.bytes) is parked; its neighbours in the batch are not', async () => {
    const topic = uniqueName('relay_small');
    const admin = createKafka(kafkaBrokers(), 'evalbox-test-admin').admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: '4000' }] }] });
    await admin.disconnect();
    const received = await collect(topic);
    // Incompressible, well under the relay's own 1 MB check: only the broker refuses it.
    const big = randomBytes(6000).toString('base64');
    await database.db
      .transaction()
      .execute((trx) =>
        insertOutboxEvents(trx, [
          event(topic, 'a', { n: 1 }),
          { ...event(topic, 'a', { n: 2, big }), id: '00000000-0000-7000-8000-0000000000c1' },
          event(topic, 'a', { n: 3 }),
          event(topic, 'b', { n: 4 }),
        ]),
      );
    relay = startTestRelay(database);
    const reportedIds: string[] = [];
    relay.events.on('relay:batchPublished', ({ publishedIds }) => reportedIds.push(...publishedIds));
    await relay.start();
    await waitForPublished(database, relay, () => received.length >= 3, { what: 'the three publishable messages' });
    await waitFor(async () => (await database.db.selectFrom('outbox_parked').select('id').execute()).length === 1, { what: 'the parked row' });
    expect(received.map((m) => (JSON.parse(m.value) as { n: number }).n)).toEqual([1, 3, 4]);
    // Sent one row per transaction after the refusal: reported as published are exactly those Kafka holds.
    await waitFor(() => reportedIds.length >= 3, { what: 'three reported as published' });
    expect([...reportedIds].sort()).toEqual(received.map((m) => m.ceId).sort());
    const parked = await database.db.selectFrom('outbox_parked').select(['id', 'error_code']).execute();
    expect(parked).toEqual([{ id: '00000000-0000-7000-8000-0000000000c1', error_code: 'ERR_MSG_SIZE_TOO_LARGE' }]);
  });

  it('guarantee 2: a full local producer queue delays rows, never skips or reorders them', async () => {
    const topic = await createTopic();
    const received = await collect(topic);
    const keys = ['k1', 'k2', 'k3'];
    for (let t = 0; t < 10; t++) {
      await database.db.transaction().execute((trx) =>
        insertOutboxEvents(
          trx,
          Array.from({ length: 30 }, (_, i) => event(topic, keys[i % 3] as string, { n: t * 30 + i })),
        ),
      );
    }
    // librdkafka holds at most 25 messages: most of every 200-row batch is refused at enqueue.
    relay = startTestRelay(database, { batchSize: 200 }, undefined, { 'queue.buffering.max.messages': 25, 'batch.num.messages': 25 });
    const batches: number[] = [];
    const reportedIds: string[] = [];
    relay.events.on('relay:batchPublished', ({ rows, publishedIds }) => {
      batches.push(rows);
      reportedIds.push(...publishedIds);
    });
    await relay.start();
    const sum = (ns: number[]) => ns.reduce((a, b) => a + b, 0);
    // A batch is reported once its cursor moved, a moment after its messages are readable on Kafka.
    await waitForPublished(database, relay, () => received.length >= 300 && sum(batches) >= 300, {
      what: '300 messages, reported published',
      timeoutMs: 60_000,
    });
    // The fault happened: every transaction committed only what librdkafka took (about 25, more
    // when it had sent some meanwhile), never a whole 200-row read; the rest was read again.
    expect(Math.max(...batches)).toBeLessThan(200);
    expect(sum(batches)).toBe(300);
    // What the relay reports as published is what Kafka holds: each event once, none missing.
    expect([...reportedIds].sort()).toEqual(received.map((m) => m.ceId).sort());
    for (const key of keys) {
      const ns = received.filter((m) => m.key === key).map((m) => (JSON.parse(m.value) as { n: number }).n);
      expect(ns).toEqual(Array.from({ length: 100 }, (_, j) => keys.indexOf(key) + 3 * j));
    }
  });

  it('reports the backend whose long transaction holds the horizon back', async () => {
    const topic = await createTopic();
    relay = startTestRelay(database, { horizonReportAfterMs: 300 });
    const reports: { seconds: number; pid?: number }[] = [];
    relay.events.on('relay:horizonBlocked', ({ seconds, blocker }) => reports.push({ seconds, pid: blocker?.pid }));
    await relay.start();
    const blocker = await database.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('CREATE TEMP TABLE hold_xid (x int)'); // takes an xid and keeps the transaction open
      const pid = (await blocker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      await database.db.transaction().execute((trx) => insertOutboxEvents(trx, [event(topic, 'k', { n: 1 })]));
      await waitFor(() => reports.some((r) => r.pid === pid && r.seconds > 0.3), { what: 'a horizon-blocker report naming the backend', timeoutMs: 20_000 });
    } finally {
      await blocker.query('ROLLBACK');
      blocker.release();
    }
  });
});
