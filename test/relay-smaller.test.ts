// The relay's smaller findings, each against the real Postgres and Kafka: a cursor from the
// future, a topic the broker does not know, a batch bounded by bytes, standbys that lock no lease
// row, and partition retention against a late insert and rows in the default partition.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { insertOutboxEvents } from '../src/events.js';
import { maintainPartitions } from '../outbox-relay/partitions.js';
import type { Relay, RelayEvents } from '../outbox-relay/relay.js';
import { claimLease, readBatchBelowHorizon } from '../outbox-relay/sql.js';
import { createTestDatabase, uniqueName, waitFor, type TestDatabase } from './helpers.js';
import { collectTopic, createTopic, explainRelayWait, startTestRelay, waitBelowHorizon, waitForPublished, waitForRelay } from './relay-helpers.js';

const event = (topic: string, key: string, data: Record<string, unknown>) => ({ topic, key, type: 'test.event', source: '/test', data });

describe('relay: smaller findings', () => {
  let database: TestDatabase;
  let relay: Relay | undefined;
  const collectors: { stop(): Promise<void> }[] = [];

  beforeAll(async () => {
    database = await createTestDatabase({ max: 20 });
  });
  afterEach(async () => {
    await relay?.stop();
    relay = undefined;
    await Promise.all(collectors.splice(0).map((c) => c.stop()));
    await sql`TRUNCATE outbox, relay_leases, outbox_parked`.execute(database.db);
  });
  afterAll(async () => database.drop());

  async function collect(topic: string) {
    const c = await collectTopic(topic);
    collectors.push(c);
    return c.received;
  }
  const write = (topic: string, key: string, n: number) => database.db.transaction().execute((trx) => insertOutboxEvents(trx, [event(topic, key, { n })]));

  it('finding 7: a cursor above every transaction id of the database (a restore, a cut-over) is refused loudly, never read past', async () => {
    const topic = await createTopic();
    const received = await collect(topic);
    // The cursor a relay left on another cluster, far ahead of this one's transaction ids.
    await sql`INSERT INTO relay_leases (shard, cursor_xid, cursor_seq) VALUES (0, (pg_snapshot_xmax(pg_current_snapshot())::text::bigint + 1000000)::text::xid8, 0)`.execute(
      database.db,
    );
    await write(topic, 'k', 1);
    // Readable before the relay starts, so that nothing on Kafka below is the relay's refusal, not the horizon.
    await waitBelowHorizon(database);
    relay = startTestRelay(database);
    const errors: RelayEvents['relay:error'][0][] = [];
    relay.events.on('relay:error', (e) => errors.push(e));
    await relay.start();
    await waitForRelay(database, relay, () => errors.find((e) => /cursor/.test(e.where)), { what: 'the relay to refuse the cursor' });
    expect(errors.find((e) => /cursor/.test(e.where))?.error.message).toMatch(/above every transaction id/);
    await new Promise((r) => setTimeout(r, 500));
    expect(received).toHaveLength(0);
    // The operator sets the cursor back: the relay publishes from there.
    await sql`UPDATE relay_leases SET cursor_xid = '0', cursor_seq = 0`.execute(database.db);
    await waitForPublished(database, relay, () => received.length === 1, { what: 'the row, once the cursor is sound', timeoutMs: 20_000 });
  });

  it('finding 7: rows for a topic the broker does not know are parked after a bound, and the shard goes on', async () => {
    const topic = await createTopic();
    const missing = uniqueName('evalbox_missing_topic');
    const received = await collect(topic);
    await write(topic, 'k', 1);
    await write(missing, 'k', 2);
    await write(topic, 'k', 3);
    // The producer may not create topics (as on a cluster with auto-creation off).
    relay = startTestRelay(database, { unknownTopicParkMs: 3_000 }, undefined, {
      'allow.auto.create.topics': false,
      'topic.metadata.propagation.max.ms': 500,
      'message.timeout.ms': 5_000,
    });
    await relay.start();
    await waitForPublished(database, relay, () => received.length === 2, { what: 'both rows of the known topic', timeoutMs: 60_000 });
    expect(received.map((m) => (JSON.parse(m.value) as { n: number }).n)).toEqual([1, 3]);
    const parked = await sql<{ topic: string; error_code: string }>`SELECT topic, error_code FROM outbox_parked`.execute(database.db);
    expect(parked.rows).toEqual([{ topic: missing, error_code: expect.stringMatching(/UNKNOWN_TOPIC/) as unknown as string }]);
  });

  it('finding 7 / memory: a batch is bounded by payload bytes, not only rows (at least one row)', async () => {
    const big = 'x'.repeat(100_000);
    await database.db.transaction().execute((trx) =>
      insertOutboxEvents(
        trx,
        Array.from({ length: 10 }, (_, n) => event('t', 'k', { n, big })),
      ),
    );
    const none = { xid: '0', seq: '0' };
    // The rows are read only once below the horizon, which any open transaction of the cluster holds back.
    await waitBelowHorizon(database);
    // A read of the wrong length says what the database looked like at that moment.
    const expectRead = async (limit: number, maxBytes: number, length: number) => {
      const rows = await readBatchBelowHorizon(database.db, 0, none, limit, maxBytes);
      if (rows.length !== length)
        throw new Error(`read ${rows.length} rows, not ${length} (limit ${limit}, ${maxBytes} bytes)\n${await explainRelayWait(database)}`);
    };
    await expectRead(1, 1, 1);
    await expectRead(100, 350_000, 4); // 0 + 3 × 100 kB before the 4th < 350 kB
    await expectRead(100, 1, 1);
    await expectRead(5, 10_000_000, 5);
  });

  it('finding 7: a standby polling for work locks no lease row', async () => {
    // Shard 0 is led elsewhere; an operator's transaction (or a slow renewal) holds its lease row.
    await claimLease(database.db, 0, 'another-relay', 60_000);
    let starting: Promise<void> | undefined;
    const holder = await database.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT * FROM relay_leases WHERE shard = 0 FOR UPDATE');
      relay = startTestRelay(database, { heartbeatMs: 100 });
      // Not awaited: a claim that waits for the row lock would hold the start up.
      starting = relay.start();
      await new Promise((r) => setTimeout(r, 1_000));
      const waiting = await sql<{ query: string }>`
        SELECT query FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%relay_leases%'`.execute(database.db);
      expect(waiting.rows).toEqual([]);
      expect(relay.ownedShards()).toEqual([]);
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
      await starting;
    }
  });

  it('finding 5: dropping a partition is safe against a late insert (lock, then look again)', async () => {
    // Only the expiring partition and the one of "today" (2031-06-01), so nothing else is dropped.
    const others = await sql<{ name: string }>`
      SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'outbox'::regclass AND c.relname ~ '^outbox_p[0-9]{8}$'`.execute(database.db);
    for (const { name } of others.rows) await sql`DROP TABLE ${sql.table(name)}`.execute(database.db);
    await sql`SELECT outbox_create_partitions('2031-05-01'::date, 1), outbox_create_partitions('2031-06-01'::date, 1)`.execute(database.db);
    await claimLease(database.db, 0, 'r', 1);
    const writer = await database.pool.connect();
    try {
      // A writer that has inserted into the expiring partition but not committed: the drop's first
      // look does not see its row; the writer commits while the drop waits for its lock.
      await writer.query('BEGIN');
      await writer.query(`INSERT INTO outbox (id, shard, topic, key, type, source, payload, created_at)
                          VALUES (gen_random_uuid(), 0, 't', 'k', 'test', '/test', '{}', '2031-05-01T12:00:00Z')`);
      const maintaining = (async () => {
        for (;;) {
          const outcome = await maintainPartitions(database.db, {
            retentionHours: 48,
            partitionsAhead: 0,
            now: new Date('2031-06-01T00:00:00Z'),
            lockTimeoutMs: 10_000,
          });
          if (!outcome.skipped) return outcome; // (not while a relay's own round runs)
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      await waitFor(
        async () =>
          (
            await sql<{ pid: number }>`
              SELECT pid FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE 'LOCK TABLE outbox%'`.execute(database.db)
          ).rows.length > 0,
        { what: 'the drop to wait for its lock' },
      );
      await writer.query('COMMIT');
      const outcome = await maintaining;
      expect(outcome.dropped).not.toContain('outbox_p20310501');
      expect(outcome.kept).toContain('outbox_p20310501');
      const rows = await sql<{ n: string }>`SELECT count(*)::text AS n FROM outbox_p20310501`.execute(database.db);
      expect(rows.rows[0]?.n).toBe('1');
    } finally {
      writer.release();
    }
  });

  it('finding 5: a row that lands in outbox_default (its day has no partition) is published, then retired after the retention window', async () => {
    const topic = await createTopic();
    const received = await collect(topic);
    // A day far ahead that has no partition: the row goes to the default partition.
    await sql`INSERT INTO outbox (id, shard, topic, key, type, source, payload, created_at)
              VALUES (gen_random_uuid(), outbox_shard_of('k'), ${topic}, 'k', 'test.event', '/test', '{"n":1}', '2040-01-01T12:00:00Z')`.execute(database.db);
    expect((await sql<{ n: string }>`SELECT count(*)::text AS n FROM outbox_default`.execute(database.db)).rows[0]?.n).toBe('1');
    relay = startTestRelay(database);
    await relay.start();
    await waitForPublished(database, relay, () => received.length === 1, { what: 'the row from the default partition', timeoutMs: 20_000 });
    await relay.stop();
    relay = undefined;
    // Within the retention window it stays; after it, and published, it is deleted.
    // (The relay's own maintenance round may still hold the maintainers' lock: wait for a round of ours.)
    const maintain = (now: string) =>
      waitFor(async () => {
        const outcome = await maintainPartitions(database.db, { retentionHours: 48, partitionsAhead: 0, now: new Date(now) });
        return !outcome.skipped && outcome;
      });
    expect((await maintain('2040-01-02T00:00:00Z')).defaultRows).toBe(1);
    expect((await maintain('2040-01-05T00:00:00Z')).defaultRows).toBe(0);
  });
});
