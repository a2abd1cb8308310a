// Relay test helpers: an in-process relay on a test database with fast lease timings, and a
// consumer that collects everything a topic receives.
import { expect } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../src/db/index.js';
import { insertOutboxEvents } from '../src/events.js';
import { createKafka, createTransactionalProducer, ensureTopics, READER_SETTINGS } from '../src/kafka.js';
import { readCloudEventHeaders } from '../src/cloudevents.js';
import { silentLogger } from '../src/logging.js';
import { createRelay, type Relay, type RelaySettings } from '../outbox-relay/relay.js';
import type { TestDatabase } from './helpers.js';
import { kafkaBrokers, uniqueName, waitFor } from './helpers.js';

export const FAST_RELAY: RelaySettings = {
  batchSize: 200,
  wakeup: 'notify',
  pollMinMs: 5,
  pollMaxMs: 100,
  leaseTtlMs: 1500,
  heartbeatMs: 300,
  retentionHours: 72,
  partitionsAhead: 2,
  maxShards: 64,
  horizonReportAfterMs: 500,
  partitionMaintenanceMs: 600_000,
};

export function startTestRelay(
  database: TestDatabase,
  settings: Partial<RelaySettings> = {},
  brokers = kafkaBrokers(),
  producerConfig: Record<string, unknown> = {},
  /** The relay's own pool (e.g. with the command's statement_timeout); default: the test database's. */
  db: Db = database.db,
): Relay {
  const relay = createRelay({
    db,
    databaseUrl: database.url,
    createProducer: (shard) =>
      createTransactionalProducer(brokers, {
        transactionalId: `evalbox-relay-test.${database.name}.shard-${shard}`,
        clientId: 'evalbox-relay-test',
        overrides: { 'message.timeout.ms': 30_000, ...producerConfig },
      }),
    logger: silentLogger(),
    settings: { ...FAST_RELAY, ...settings },
  });
  recordRelay(relay);
  return relay;
}

// What each test relay reported lately (errors, lease changes, produce errors, retries), for the
// explanation of a wait that timed out.
const journals = new WeakMap<Relay, string[]>();

export function recordRelay(relay: Relay): void {
  if (journals.has(relay)) return;
  const journal: string[] = [];
  journals.set(relay, journal);
  const started = Date.now();
  const note = (what: string) => {
    journal.push(`+${((Date.now() - started) / 1000).toFixed(1)}s ${what}`);
    if (journal.length > 40) journal.shift();
  };
  relay.events.on('relay:error', ({ where, error }) => note(`error at ${where}: ${error.message}`));
  relay.events.on('relay:leaseAcquired', ({ shard, epoch }) => note(`lease acquired: shard ${shard} epoch ${epoch}`));
  relay.events.on('relay:leaseLost', ({ shard, epoch, reason }) => note(`lease lost: shard ${shard} epoch ${epoch} (${reason})`));
  relay.events.on('relay:produceError', ({ shard, code, message }) => note(`produce error: shard ${shard} ${code} ${message}`));
  relay.events.on('relay:batchRetry', ({ shard, attempt, code }) => note(`batch retry: shard ${shard} attempt ${attempt} ${code}`));
  relay.events.on('relay:batchPublished', ({ shard, rows, parked }) => note(`batch published: shard ${shard} ${rows} rows, ${parked} parked`));
  relay.events.on('relay:horizonBlocked', ({ shard, seconds, blocker }) => {
    if (seconds > 0) note(`horizon blocked: shard ${shard} ${seconds.toFixed(1)}s by pid ${blocker?.pid ?? '?'}`);
  });
}

/**
 * Why a relay has not published yet, as far as the database and the relay can tell: the open
 * transactions of the whole cluster that hold the snapshot horizon back (any test file's, on the
 * shared cluster), the lease rows, the rows past each cursor and how many of them are below the
 * horizon, and what the relay reported lately.
 */
export async function explainRelayWait(database: TestDatabase, relays?: Relay | Relay[]): Promise<string> {
  const lines: string[] = [];
  const section = async (title: string, query: () => Promise<unknown[]>) => {
    try {
      const rows = await query();
      lines.push(`${title}:${rows.length === 0 ? ' none' : ''}`, ...rows.map((r) => `  ${JSON.stringify(r)}`));
    } catch (error) {
      lines.push(`${title}: (query failed: ${(error as Error).message})`);
    }
  };
  const rows = async (query: RawBuilder<unknown>) => (await query.execute(database.db)).rows;
  await section('snapshot', () => rows(sql`SELECT pg_current_snapshot()::text AS snapshot, now() AS at`));
  await section('oldest open transactions in the cluster (backend_xid holds the horizon)', () =>
    rows(sql`
      SELECT pid, datname, application_name, state, backend_xid::text, backend_xmin::text,
             round(extract(epoch FROM now() - xact_start)::numeric, 1) AS age_s,
             wait_event_type, left(regexp_replace(query, '[[:space:]]+', ' ', 'g'), 160) AS query
      FROM pg_stat_activity
      WHERE pid <> pg_backend_pid() AND xact_start IS NOT NULL AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)
      ORDER BY backend_xid IS NULL, age(backend_xid) DESC, xact_start
      LIMIT 8`),
  );
  await section('prepared transactions', () => rows(sql`SELECT gid, transaction::text, prepared, database FROM pg_prepared_xacts`));
  await section('lease rows', () =>
    rows(sql`
      SELECT shard, owner, epoch::text, cursor_xid::text, cursor_seq::text,
             round(extract(epoch FROM expires_at - now())::numeric, 1) AS expires_in_s, published_at
      FROM relay_leases ORDER BY shard`),
  );
  await section('rows past each cursor', () =>
    rows(sql`
      SELECT o.shard, count(*)::int AS pending,
             count(*) FILTER (WHERE o.xid < pg_snapshot_xmin(pg_current_snapshot()))::int AS below_horizon,
             min(o.xid)::text AS min_xid, max(o.xid)::text AS max_xid
      FROM outbox o LEFT JOIN relay_leases l ON l.shard = o.shard
      WHERE (o.xid, o.seq) > (coalesce(l.cursor_xid, '0'::xid8), coalesce(l.cursor_seq, 0))
      GROUP BY o.shard ORDER BY o.shard`),
  );
  for (const relay of relays === undefined ? [] : [relays].flat()) {
    lines.push(`relay ${relay.instanceId} leads shards [${relay.ownedShards().join(', ')}]; it reported lately:`);
    lines.push(...(journals.get(relay) ?? ['  (not recorded)']).map((l) => `  ${l}`));
  }
  return lines.join('\n');
}

/** waitFor, whose timeout error explains why the relay has not got there (explainRelayWait). */
export async function waitForRelay<T>(
  database: TestDatabase,
  relay: Relay | Relay[] | undefined,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  try {
    return await waitFor(check, options);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${await explainRelayWait(database, relay)}`, { cause: error });
  }
}

/**
 * Waits until no outbox row is hidden by the snapshot horizon. Any open transaction of the shared
 * cluster (other test files hold some on purpose) holds the horizon back and with it every read
 * of the relay: a test first waits for this, generously, and only then times the relay.
 */
export async function waitBelowHorizon(database: TestDatabase, relay?: Relay | Relay[], timeoutMs = 60_000): Promise<void> {
  await waitForRelay(
    database,
    relay,
    async () =>
      (await sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox WHERE xid >= pg_snapshot_xmin(pg_current_snapshot())`.execute(database.db)).rows[0]?.n ===
      0,
    { timeoutMs, intervalMs: 100, what: 'every outbox row to fall below the snapshot horizon' },
  );
}

/** The rows written so far below the horizon first (waitBelowHorizon), then `check` within the relay's own time. */
export async function waitForPublished<T>(
  database: TestDatabase,
  relay: Relay | Relay[] | undefined,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: { timeoutMs?: number; what?: string } = {},
): Promise<T> {
  await waitBelowHorizon(database, relay);
  return waitForRelay(database, relay, check, options);
}

export interface Received {
  key: string;
  value: string;
  ceId: string;
  ceType: string | undefined;
  headers: Record<string, string | undefined>;
  partition: number;
  offset: string;
  /** Date.now() when the collector got it. */
  receivedAt: number;
}

/** Collects every message of `topic` from the beginning until stop(). */
export async function collectTopic(topic: string, brokers = kafkaBrokers()) {
  const kafka = createKafka(brokers, 'evalbox-test-collector');
  const received: Received[] = [];
  const consumer = kafka.consumer({
    kafkaJS: { groupId: uniqueName('collector'), fromBeginning: true, readUncommitted: false },
    'topic.metadata.refresh.interval.ms': READER_SETTINGS['topic.metadata.refresh.interval.ms'],
  });
  await consumer.connect();
  await consumer.subscribe({ topic });
  await consumer.run({
    eachMessage: async ({ message, partition }) => {
      const ce = readCloudEventHeaders(message.headers);
      received.push({
        key: String(message.key),
        value: String(message.value),
        ceId: ce.id ?? '',
        ceType: ce.type,
        headers: { ...ce, contentType: readHeader(message.headers, 'content-type') },
        partition,
        offset: message.offset,
        receivedAt: Date.now(),
      });
    },
  });
  // A test times what happens after this returns: a collector still joining its group is not the relay's delay.
  await waitFor(() => consumer.assignment().length > 0, { what: `the collector of ${topic} to be assigned its partitions`, timeoutMs: 30_000 });
  return { received, stop: () => consumer.disconnect() };
}

function readHeader(headers: unknown, name: string): string | undefined {
  const value = (headers as Record<string, unknown> | undefined)?.[name];
  if (value === undefined) return undefined;
  return Buffer.isBuffer(value) ? value.toString('utf8') : typeof value === 'string' ? value : JSON.stringify(value);
}

export async function createTopic(brokers = kafkaBrokers(), partitions = 3): Promise<string> {
  const topic = uniqueName('relay');
  await ensureTopics(createKafka(brokers, 'evalbox-test-admin'), [{ topic, numPartitions: partitions }]);
  return topic;
}

/**
 * An independent reference for per-key commit order: a counter per key, incremented in the same
 * transaction that writes the key's outbox row, after a per-key lock taken before the
 * transaction's first write.
 */
export async function createCountedKeyTable(database: TestDatabase): Promise<void> {
  await sql`CREATE TABLE IF NOT EXISTS test_key_counter (key text PRIMARY KEY, n integer NOT NULL)`.execute(database.db);
}

/** One transaction writing `count` events over `keys` (round robin), each carrying its key's next counter value. */
export async function writeCounted(database: TestDatabase, topic: string, keys: string[], count: number): Promise<void> {
  await database.db.transaction().execute(async (trx) => {
    const used = [...new Set(Array.from({ length: count }, (_, i) => keys[i % keys.length] as string))].sort();
    for (const key of used) await sql`SELECT pg_advisory_xact_lock(hashtext(${key}))`.execute(trx);
    const events = [];
    for (let i = 0; i < count; i++) {
      const key = keys[i % keys.length] as string;
      const { rows } = await sql<{ n: number }>`
        INSERT INTO test_key_counter (key, n) VALUES (${key}, 1)
        ON CONFLICT (key) DO UPDATE SET n = test_key_counter.n + 1 RETURNING n`.execute(trx);
      events.push({ topic, key, type: 'test.event', source: '/test', data: { key, n: rows[0]?.n } });
    }
    await insertOutboxEvents(trx, events);
  });
}

async function counterOrder(database: TestDatabase): Promise<Map<string, number[]>> {
  const { rows } = await sql<{ key: string; n: number }>`SELECT key, n FROM test_key_counter`.execute(database.db);
  return new Map(rows.map((r) => [r.key, Array.from({ length: r.n }, (_, i) => i + 1)]));
}

const countersByKey = (received: Received[]) => {
  const byKey = new Map<string, number[]>();
  for (const m of received) byKey.set(m.key, [...(byKey.get(m.key) ?? []), (JSON.parse(m.value) as { n: number }).n]);
  return byKey;
};

/** Every key's events arrived exactly once each, in the counter's order. */
export async function expectEveryKeyExactlyInCounterOrder(database: TestDatabase, received: Received[]): Promise<void> {
  expect(countersByKey(received)).toEqual(await counterOrder(database));
}

/**
 * Every key's events arrived in the counter's order, judged both by each event's first copy and by
 * its last copy: a repeat is only ever a replay that continues into newer events, never an older
 * event delivered after a newer one.
 */
export async function expectNoOlderEventAfterNewer(database: TestDatabase, received: Received[]): Promise<void> {
  const expected = await counterOrder(database);
  const firstCopies = new Map<string, number[]>();
  const lastCopies = new Map<string, number[]>();
  for (const [key, ns] of countersByKey(received)) {
    firstCopies.set(key, [...new Set(ns)]);
    lastCopies.set(key, [...new Set([...ns].reverse())].reverse());
  }
  expect(firstCopies).toEqual(expected);
  expect(lastCopies).toEqual(expected);
}

/** `evalbox relay` as a real process on the test database, publishing `topic`; output() is its log so far. */
export function spawnRelay(database: TestDatabase, topic: string, env: Record<string, string> = {}): ChildProcess & { output: () => string } {
  let output = '';
  const child = spawn('node', ['bin/evalbox.js', 'relay', '--database-url', database.url, '--kafka-brokers', kafkaBrokers(), '--batch-size', '100'], {
    env: { ...process.env, EVALBOX_TOPIC_EVENTS: topic, EVALBOX_TOPIC_SCORES: `${topic}.scores`, EVALBOX_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  return Object.assign(child, { output: () => output });
}
