// The lease heartbeat and the relay's event listeners against the real Postgres and Kafka: a
// listener that throws inside the heartbeat does not end it, and one that throws after a batch
// committed does not make the batch be sent again.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { createDb } from '../src/db/index.js';
import { insertOutboxEvents } from '../src/events.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';
import { collectTopic, createTopic, startTestRelay, waitForPublished, waitForRelay } from './relay-helpers.js';

describe('relay lease heartbeat', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase({ max: 10 });
  });
  afterAll(async () => database.drop());

  it('a relay:error listener that throws inside the heartbeat (on a failed renewal) is reported, and the heartbeat goes on: the relay claims the shard again and publishes', async () => {
    const topic = await createTopic();
    const collector = await collectTopic(topic);
    // The relay's own pool with a short statement_timeout: a renewal that waits on a lock fails.
    const handle = createDb(database.url, { max: 4, applicationName: 'evalbox-relay-under-test', statementTimeoutMs: 1_000 });
    const relay = startTestRelay(database, {}, undefined, {}, handle.db);
    const errors: { where: string; message: string }[] = [];
    let thrown = 0;
    relay.events.on('relay:error', ({ where, error }) => {
      errors.push({ where, message: error.message });
      // A faulty error reporter: it throws once, inside the heartbeat.
      if (where === 'lease renewal' && thrown++ === 0) throw new Error('the error reporter failed');
    });
    try {
      await relay.start();
      await waitForRelay(database, relay, () => relay.ownedShards().length === 1, { what: 'the relay to lead shard 0' });
      // An operator's transaction holds the lease row: the renewal waits on it until the statement timeout.
      const holder = await database.pool.connect();
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT * FROM relay_leases WHERE shard = 0 FOR UPDATE');
        await waitForRelay(database, relay, () => thrown > 0, { what: 'a renewal cut by the statement timeout', timeoutMs: 30_000 });
        expect(errors.find((e) => e.where === 'lease renewal')?.message).toMatch(/statement timeout/);
      } finally {
        await holder.query('ROLLBACK');
        holder.release();
      }
      await database.db.transaction().execute((trx) => insertOutboxEvents(trx, [{ topic, key: 'k', type: 'test.event', source: '/test', data: { n: 1 } }]));
      await waitForPublished(database, relay, () => collector.received.length === 1, {
        what: 'the row, published after the listener threw',
        timeoutMs: 30_000,
      });
      // The listener's failure itself was reported, not swallowed.
      await waitFor(() => errors.some((e) => e.where === 'listener of relay:error' && /error reporter failed/.test(e.message)), {
        what: 'the listener failure reported',
        timeoutMs: 5_000,
      });
    } finally {
      await relay.stop();
      await collector.stop();
      await handle.close();
    }
  });

  it('a beat that outlasts the heartbeat period holds back the next beats instead of queueing them: no burst of renewals after a renewal waited on a lock', async () => {
    // Every renewal of the lease row, with the database's clock.
    await sql`CREATE TABLE IF NOT EXISTS test_renewals (at timestamptz NOT NULL DEFAULT clock_timestamp())`.execute(database.db);
    await sql`CREATE OR REPLACE FUNCTION test_note_renewal() RETURNS trigger LANGUAGE plpgsql AS $$
              BEGIN INSERT INTO test_renewals DEFAULT VALUES; RETURN NEW; END $$`.execute(database.db);
    await sql`CREATE OR REPLACE TRIGGER test_renewals AFTER UPDATE OF expires_at ON relay_leases FOR EACH ROW EXECUTE FUNCTION test_note_renewal()`.execute(
      database.db,
    );
    await sql`TRUNCATE relay_leases, test_renewals`.execute(database.db);
    // Beats every 100 ms; a lease long enough that the wait below loses nothing.
    const relay = startTestRelay(database, { heartbeatMs: 100, leaseTtlMs: 60_000 });
    try {
      await relay.start();
      await waitForRelay(database, relay, () => relay.ownedShards().length === 1, { what: 'the relay to lead shard 0' });
      const holder = await database.pool.connect();
      let releasedAt: Date;
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT * FROM relay_leases WHERE shard = 0 FOR UPDATE');
        // A renewal waits on the row lock for 3 s: 30 periods of the heartbeat.
        await new Promise((r) => setTimeout(r, 3_000));
        releasedAt = (await holder.query<{ now: Date }>('SELECT clock_timestamp() AS now')).rows[0]?.now as Date;
      } finally {
        await holder.query('ROLLBACK');
        holder.release();
      }
      await new Promise((r) => setTimeout(r, 1_000));
      const { rows } = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM test_renewals WHERE at BETWEEN ${releasedAt} AND ${releasedAt}::timestamptz + interval '300 ms'`.execute(database.db);
      // One beat per period at most (about 3 in 300 ms), not the 30 queued up during the wait.
      expect(rows[0]?.n).toBeLessThanOrEqual(5);
    } finally {
      await relay.stop();
      await sql`DROP TRIGGER test_renewals ON relay_leases`.execute(database.db);
    }
  });

  it('a relay event listener that throws after a batch committed never makes the batch be sent again', async () => {
    const topic = await createTopic();
    const collector = await collectTopic(topic);
    const relay = startTestRelay(database);
    let thrown = 0;
    // A faulty metrics listener: it throws on the first batch reported as published.
    relay.events.on('relay:batchPublished', () => {
      if (thrown++ === 0) throw new Error('the metrics listener failed');
    });
    try {
      await relay.start();
      await database.db.transaction().execute((trx) =>
        insertOutboxEvents(
          trx,
          [1, 2, 3].map((n) => ({ topic, key: 'k', type: 'test.event', source: '/test', data: { n } })),
        ),
      );
      await waitForPublished(database, relay, () => collector.received.length >= 3, { what: 'the three rows', timeoutMs: 30_000 });
      await waitForRelay(database, relay, () => thrown > 0, { what: 'the listener to have thrown' });
      // A second copy would follow the first at once (the batch is retried right away).
      await new Promise((r) => setTimeout(r, 3_000));
      expect(collector.received.map((m) => (JSON.parse(m.value) as { n: number }).n)).toEqual([1, 2, 3]);
    } finally {
      await relay.stop();
      await collector.stop();
    }
  });
});
