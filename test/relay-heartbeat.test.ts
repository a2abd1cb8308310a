// The lease heartbeat and the relay's event listeners against the real Postgres and Kafka: a
// listener that throws inside the heartbeat does not end it, and one that throws after a batch
// committed does not make the batch be sent again.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
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
