// The wake-up: writers' transactions never NOTIFY (a notifying transaction holds a cluster-wide
// lock through its commit); the writer nudges the relay after the commit instead, and the relay's
// listener survives the loss of its connection.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { insertOutboxEvents } from '../src/events.js';
import { createOutboxNudger, OUTBOX_CHANNEL } from '../src/outbox-wakeup.js';
import { listenWakeups } from '../outbox-relay/wakeup.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';
import { createTopic, startTestRelay, waitBelowHorizon, waitForRelay } from './relay-helpers.js';

describe('relay wake-up', () => {
  let database: TestDatabase;
  let topic: string;
  beforeAll(async () => {
    database = await createTestDatabase({ max: 10 });
    topic = await createTopic();
  });
  afterAll(async () => database.drop());

  const event = (n: number) => ({ topic, key: 'app-w', type: 'test.event', source: '/test', data: { n } });
  it('a transaction that writes outbox rows sends no notification of its own', async () => {
    const listener = new pg.Client({ connectionString: database.url });
    await listener.connect();
    const received: string[] = [];
    listener.on('notification', (m) => received.push(m.payload ?? ''));
    await listener.query(`LISTEN ${OUTBOX_CHANNEL}`);
    try {
      await database.db.transaction().execute((trx) => insertOutboxEvents(trx, [event(1), event(2)]));
      // A notification is delivered at the writer's commit; a round trip on the listener's own
      // connection after that commit has certainly seen it arrive if there was one.
      await listener.query('SELECT 1');
      await new Promise((r) => setTimeout(r, 300));
      expect(received).toEqual([]);
      // The nudge after the commit is what notifies, once for many commits.
      const nudger = createOutboxNudger(database.db);
      nudger.nudge([0]);
      await nudger.idle();
      await waitFor(async () => received.length > 0, { timeoutMs: 5000 });
      expect(received).toEqual(['0']);
    } finally {
      await listener.end();
    }
  });

  it('the nudge after a commit wakes a relay whose poll has backed off, also after its listen connection was killed', async () => {
    // The poll would not look again for ten minutes: only a nudge can explain a publish within
    // the waits below (generous: a loaded broker can take many seconds for the first transaction).
    // Without the rows of the test before: under a held-back horizon they could be published
    // after the count below was taken, and no count would match.
    await database.pool.query('TRUNCATE outbox');
    const relay = startTestRelay(database, { pollMinMs: 600_000, pollMaxMs: 600_000 });
    const published: number[] = [];
    relay.events.on('relay:batchPublished', ({ rows }) => published.push(rows));
    await relay.start();
    const nudger = createOutboxNudger(database.db);
    try {
      await waitForRelay(database, relay, async () => relay.ownedShards().length === 1, { timeoutMs: 10_000, what: 'the relay to lead the shard' });
      // Let the first empty read happen, so the worker is waiting on its one-minute poll.
      await new Promise((r) => setTimeout(r, 500));
      const publishedBefore = published.reduce((a, b) => a + b, 0);
      await database.db.transaction().execute((trx) => insertOutboxEvents(trx, [event(3)]));
      // The relay reads only below the snapshot horizon, which any open transaction on the shared
      // cluster holds back: nudge once the rows are readable, so only the nudge is under test.
      await waitBelowHorizon(database, relay);
      nudger.nudge([0]);
      await waitForRelay(database, relay, async () => published.reduce((a, b) => a + b, 0) === publishedBefore + 1, {
        timeoutMs: 45_000,
        what: 'the first nudged row to be published',
      });

      // Kill the listener's backend: the relay reconnects and is woken again by the next nudge.
      const admin = new pg.Client({ connectionString: database.url });
      await admin.connect();
      await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'evalbox-relay-listen' AND datname = current_database()`,
      );
      await waitFor(
        async () =>
          (
            await admin.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'evalbox-relay-listen' AND datname = current_database()`,
            )
          ).rows[0]?.n === 1,
        { timeoutMs: 20_000, what: 'the listener to reconnect' },
      );
      await admin.end();
      await new Promise((r) => setTimeout(r, 300));
      await database.db.transaction().execute((trx) => insertOutboxEvents(trx, [event(4)]));
      await waitBelowHorizon(database, relay);
      nudger.nudge([0]);
      await waitForRelay(database, relay, async () => published.reduce((a, b) => a + b, 0) === publishedBefore + 2, {
        timeoutMs: 45_000,
        what: 'the row nudged after the reconnect to be published',
      });
    } finally {
      await nudger.idle();
      await relay.stop();
    }
  }, 300_000);

  it('guarantee 7: a listener stopped while its connection is still being made leaves no connection open (the process can exit)', async () => {
    const listenConnections = async () =>
      (
        await database.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'evalbox-relay-listen'`,
        )
      ).rows[0]?.n;
    // A SIGTERM that lands while the listener (re)connects: stop() runs before connect() finished.
    const source = listenWakeups(database.url);
    const starting = source.start(
      () => {},
      () => {},
    );
    await source.stop();
    await starting.catch(() => {});
    await new Promise((r) => setTimeout(r, 300));
    expect(await listenConnections()).toBe(0);
  });
});
