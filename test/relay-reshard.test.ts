// Resharding while writers run: no row is stranded on a shard nobody claims, the backlog counts
// every unpublished row, and per-key order (by an independent per-key counter) holds across the
// change, with two relays leading the shards of the old and the new generation.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { insertOutboxEvents } from '../src/events.js';
import { runInspection, type BacklogRow } from '../src/inspect.js';
import { setShardCount, type Relay } from '../outbox-relay/relay.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';
import {
  collectTopic,
  createCountedKeyTable,
  createTopic,
  expectEveryKeyExactlyInCounterOrder,
  startTestRelay,
  waitForPublished,
  writeCounted,
} from './relay-helpers.js';

describe('relay resharding', () => {
  let database: TestDatabase;
  const relays: Relay[] = [];
  const collectors: { stop(): Promise<void> }[] = [];

  beforeAll(async () => {
    database = await createTestDatabase({ max: 40 });
    await createCountedKeyTable(database);
  });
  afterEach(async () => {
    await Promise.all(relays.splice(0).map((r) => r.stop()));
    await Promise.all(collectors.splice(0).map((c) => c.stop()));
  });
  afterAll(async () => database.drop());

  async function collect(topic: string) {
    const c = await collectTopic(topic);
    collectors.push(c);
    return c.received;
  }

  /** A key whose shard, under the current shard count, is `shard`. */
  async function keyOnShard(shard: number, prefix: string): Promise<string> {
    for (let i = 0; ; i++) {
      const key = `${prefix}-${i}`;
      const { rows } = await sql<{ s: number }>`SELECT outbox_shard_of(${key}) AS s`.execute(database.db);
      if (rows[0]?.s === shard) return key;
    }
  }

  async function backlog(): Promise<number> {
    const rows = await runInspection<BacklogRow>(database.db, 'backlog');
    return rows.reduce((sum, r) => sum + Number(r.pending), 0);
  }

  /** Opens a transaction that writes one event of `key` and commits only when the returned function is called. */
  async function openWriter(topic: string, key: string): Promise<{ commit: () => Promise<void> }> {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    let written: () => void = () => {};
    const inserted = new Promise<void>((resolve) => (written = resolve));
    const done = database.db.transaction().execute(async (trx) => {
      await insertOutboxEvents(trx, [{ topic, key, type: 'test.event', source: '/test', data: { key, n: 1 } }]);
      written();
      await gate;
    });
    await inserted;
    return {
      commit: async () => {
        release();
        await done;
      },
    };
  }

  it('finding 6: a writer still open when the shard count shrinks has its row published after a relay restart, and counted in the backlog until then', async () => {
    await sql`UPDATE outbox_settings SET shards = 4`.execute(database.db);
    const topic = await createTopic();
    const received = await collect(topic);
    const first = startTestRelay(database);
    await first.start();
    await waitFor(() => first.ownedShards().length === 4, { what: 'the relay to lead 4 shards' });

    // Written with 4 shards, to shard 3, still open while the count goes to 2.
    const key = await keyOnShard(3, 'late');
    const writer = await openWriter(topic, key);
    const changed = setShardCount(database.db, 2, 200);
    // A rolling restart, as after `evalbox relay --shards 2`: the relays that start after the
    // change must still find the row, and until they publish it the backlog counts it.
    await first.stop();
    await writer.commit();
    await changed;
    expect(await backlog()).toBe(1);
    const second = startTestRelay(database);
    relays.push(second);
    await second.start();
    await waitForPublished(database, second, () => received.some((m) => m.key === key), { what: 'the open writer’s row on Kafka', timeoutMs: 20_000 });
    await waitFor(async () => (await backlog()) === 0, { what: 'an empty backlog' });
  });

  it('finding 6: per-key order holds and nothing is lost when the shard count changes twice with writers in flight and two relays', async () => {
    await sql`TRUNCATE test_key_counter`.execute(database.db);
    const topic = await createTopic();
    const received = await collect(topic);
    for (let i = 0; i < 2; i++) {
      const relay = startTestRelay(database, { maxShards: 3 });
      relays.push(relay);
      await relay.start();
    }
    const keys = Array.from({ length: 8 }, (_, i) => `key-${i}`);
    let writing = true;
    const written = { n: 0 };
    const writers = Array.from({ length: 8 }, async (_, w) => {
      while (writing) {
        await writeCounted(database, topic, [keys[w % keys.length] as string, keys[(w + 3) % keys.length] as string], 2);
        written.n += 2;
      }
    });
    try {
      await waitFor(() => received.length >= 100, { what: 'the first events', timeoutMs: 20_000 });
      // Grow, then shrink, each while the writers run and events are pending.
      await setShardCount(database.db, 5, 200);
      const afterFirst = written.n;
      await waitFor(() => written.n >= afterFirst + 300, { what: 'writes after the first change', timeoutMs: 30_000 });
      await setShardCount(database.db, 3, 200);
      const before = written.n;
      await waitFor(() => written.n >= before + 300, { what: 'writes after the second change', timeoutMs: 30_000 });
    } finally {
      writing = false;
      await Promise.all(writers);
    }

    await waitForPublished(database, relays, () => new Set(received.map((m) => m.ceId)).size >= written.n, {
      what: `${written.n} distinct events`,
      timeoutMs: 60_000,
    });
    await new Promise((r) => setTimeout(r, 500));
    await expectEveryKeyExactlyInCounterOrder(database, received);
    expect(await backlog()).toBe(0);
    // Both past generations are drained, and the relays lead only the current one's shards.
    const { rows } = await sql<{ generation: string; drained: boolean }>`
      SELECT generation::text, drained_at IS NOT NULL AS drained FROM outbox_shard_generations ORDER BY generation`.execute(database.db);
    expect(rows.slice(0, -1).every((r) => r.drained)).toBe(true);
    const current = await sql<{ shard: number }>`SELECT outbox_active_shards() AS shard`.execute(database.db);
    await waitFor(
      () =>
        relays
          .flatMap((r) => r.ownedShards())
          .sort()
          .join() ===
        current.rows
          .map((r) => r.shard)
          .sort()
          .join(),
      {
        what: 'the relays to lead the current generation only',
      },
    );
  });
});
