// Benchmark: relay throughput against kcat producing the same messages to the same broker, and
// latency from a row's commit to its batch's Kafka commit under a steady write rate, for the
// nudge after commit, the adaptive poll and a naive 1 s poller, at a steady rate and at a low one
// (whole milliseconds: both ends are Date.now()).
//   node --import tsx bench/relay.ts [--events 50000] [--rate 200] [--low-rate 20] [--seconds 10] [--low-seconds 30]
// Memory only: node --import tsx bench/relay.ts --memory 200000 (each case in a process of its own:
// peak RSS while the relay drains a backlog of small rows, and of 256 kB rows bounded by rows
// only against bounded by bytes).
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { createRelay, type RelaySettings } from '../outbox-relay/relay.js';
import { createDb } from '../src/db/index.js';
import { createBatchProducer, createKafka, createTransactionalProducer, ensureTopics, type TransactionalProducer } from '../src/kafka.js';
import { silentLogger } from '../src/logging.js';
import { createOutboxNudger } from '../src/outbox-wakeup.js';
import {
  elapsedById,
  freshDatabase,
  loadAverage,
  machine,
  percentile,
  relaySettings,
  reportFigures,
  requireEnv,
  settleLatencies,
  steadyWriters,
} from './lib.js';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '50000' },
    rate: { type: 'string', default: '200' },
    'low-rate': { type: 'string', default: '20' },
    seconds: { type: 'string', default: '10' },
    // 600 events at the low rate: a p99 of 200 would be the second-slowest event alone
    'low-seconds': { type: 'string', default: '30' },
    memory: { type: 'string' },
    'memory-case': { type: 'string' },
  },
});
const events = Number(values.events);
const rate = Number(values.rate);
const lowRate = Number(values['low-rate']);
const seconds = Number(values.seconds);
const lowSeconds = Number(values['low-seconds']);
const brokers = requireEnv('KAFKA_BROKERS');
const kafka = createKafka(brokers, 'evalbox-bench');
const payload = JSON.stringify({
  schemaVersion: 1,
  evaluationId: '01a20dbf-f747-7000-9b29-178bbe1a7624',
  applicationId: 'bench',
  prompt: 'p'.repeat(200),
  response: 'r'.repeat(200),
  dimensions: ['toxicity'],
});

const settings = relaySettings;

type ProducerMode = 'transactional' | 'idempotent';

/**
 * The relay's producer in either mode: one Kafka transaction per batch (what the relay runs), or
 * the idempotent producer it used before, with transactions as no-ops (for comparison only: that
 * mode can repeat or reorder a key after a mid-batch failure and does not fence a former leader).
 */
function producerFor(mode: ProducerMode, prefix: string) {
  return (shard: number): TransactionalProducer => {
    if (mode === 'transactional') return createTransactionalProducer(brokers, { transactionalId: `${prefix}.shard-${shard}` });
    const p = createBatchProducer(brokers);
    const none = () => Promise.resolve();
    return {
      connect: () => p.connect(),
      begin: none,
      produceBatch: (messages) => p.produceBatch(messages),
      commit: none,
      abort: none,
      disconnect: () => p.disconnect(),
    };
  };
}

async function throughput(mode: ProducerMode): Promise<{ relay: number; kcat: number }> {
  const url = await freshDatabase('evalbox_bench_relay');
  const handle = createDb(url, { max: 4 });
  const topic = `bench-relay-${Date.now()}`;
  await ensureTopics(kafka, [
    { topic, numPartitions: 6 },
    { topic: `${topic}-kcat`, numPartitions: 6 },
  ]);
  await sql`INSERT INTO outbox (id, shard, topic, key, type, source, payload)
            SELECT gen_random_uuid(), outbox_shard_of('app-' || (i % 50)), ${topic}, 'app-' || (i % 50), 'evaluation.created', '/bench', ${payload}::jsonb
            FROM generate_series(1, ${events}) i`.execute(handle.db);
  const relay = createRelay({
    db: handle.db,
    databaseUrl: url,
    createProducer: producerFor(mode, `bench-${topic}`),
    logger: silentLogger(),
    settings: settings({}),
  });
  const started = Date.now();
  await relay.start();
  for (;;) {
    const { rows } = await sql<{ n: string }>`SELECT cursor_seq::text AS n FROM relay_leases WHERE shard = 0`.execute(handle.db);
    if (Number(rows[0]?.n ?? 0) >= events) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const relaySeconds = (Date.now() - started) / 1000;
  await relay.stop();
  await handle.close();

  // kcat: the same keys, values and CloudEvents headers, idempotent with acks=all.
  const file = path.join(os.tmpdir(), `evalbox-kcat-${process.pid}.txt`);
  fs.writeFileSync(file, Array.from({ length: events }, (_, i) => `app-${i % 50}\t${payload}`).join('\n') + '\n');
  const kcatStarted = Date.now();
  const kcat = spawnSync(
    'kcat',
    [
      '-P',
      '-b',
      brokers,
      '-t',
      `${topic}-kcat`,
      '-K',
      '\t',
      '-l',
      '-X',
      'enable.idempotence=true',
      '-X',
      'acks=all',
      '-X',
      'linger.ms=2',
      '-X',
      'compression.type=lz4',
      '-H',
      'ce_id=01a20dbf-f747-7000-9b29-178bbe1a7624',
      '-H',
      'ce_type=evaluation.created',
      '-H',
      'ce_source=/bench',
      '-H',
      'ce_specversion=1.0',
      '-H',
      'ce_time=2026-11-24T00:00:00Z',
      '-H',
      'content-type=application/json',
      file,
    ],
    { encoding: 'utf8' },
  );
  const kcatSeconds = (Date.now() - kcatStarted) / 1000;
  fs.rmSync(file);
  if (kcat.status !== 0) throw new Error(`kcat failed: ${kcat.stderr}`);
  return { relay: events / relaySeconds, kcat: events / kcatSeconds };
}

interface LatencyFigures {
  line: string;
  /** From the writer's commit returning to the batch's Kafka commit. */
  p50: number;
  p99: number;
  /** From the row's transaction start (its created_at: what the relay's metric measures). */
  writtenP50: number;
  writtenP99: number;
}

async function latency(
  label: string,
  overrides: Partial<RelaySettings>,
  mode: ProducerMode = 'transactional',
  atRate = rate,
  forSeconds = seconds,
): Promise<LatencyFigures> {
  const url = await freshDatabase('evalbox_bench_relay_latency');
  const handle = createDb(url, { max: 10 });
  const topic = `bench-latency-${Date.now()}`;
  await ensureTopics(kafka, [{ topic, numPartitions: 6 }]);
  const relay = createRelay({
    db: handle.db,
    databaseUrl: url,
    createProducer: producerFor(mode, `bench-${topic}`),
    logger: silentLogger(),
    settings: settings(overrides),
  });
  const latencies: number[] = [];
  // The first time each event was committed on Kafka (a redelivered row keeps its first).
  const kafkaCommittedAt = new Map<string, number>();
  const trouble: string[] = [];
  relay.events.on('relay:batchPublished', (batch) => {
    latencies.push(...batch.publishLatencies.map((s) => s * 1000));
    if (batch.kafkaCommittedAt === undefined) return;
    for (const id of batch.publishedIds) if (!kafkaCommittedAt.has(id)) kafkaCommittedAt.set(id, batch.kafkaCommittedAt);
  });
  relay.events.on('relay:rowParked', ({ id, code }) => trouble.push(`parked ${id} (${code})`));
  relay.events.on('relay:error', ({ where, error }) => trouble.push(`${where}: ${error.message}`));
  /** Waits until `unpublished()` is 0; a row the relay parked or an error it hit fails the run instead of hanging it. */
  const untilPublished = async (unpublished: () => number) => {
    const deadline = Date.now() + 60_000;
    for (let left = unpublished(); left > 0; left = unpublished()) {
      if (Date.now() > deadline) throw new Error(`${left} events not published after 60 s; relay: ${trouble.join('; ') || 'no error reported'}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  await relay.start();
  // Writers nudge the relay after each commit, as the API and the scorer do.
  const nudger = createOutboxNudger(handle.db);
  const write = async (w: number) => {
    const id = randomUUID();
    await sql`INSERT INTO outbox (id, shard, topic, key, type, source, payload) VALUES (${id}, outbox_shard_of(${`app-${w}`}), ${topic}, ${`app-${w}`}, 'evaluation.created', '/bench', ${payload}::jsonb)`.execute(
      handle.db,
    );
    nudger.nudge();
    return id;
  };
  // One event per writer first, reported apart: the relay has just started, so each shard's
  // producer connects on its first batch (initTransactions) and looks up the topic, created a
  // moment ago. A running relay pays that again only after a start, a lease takeover or a new
  // producer.
  const writers = 4;
  await Promise.all(Array.from({ length: writers }, (_, w) => write(w)));
  await untilPublished(() => writers - latencies.length);
  const firstEvents = Math.max(...latencies);
  latencies.length = 0;
  // When each writer saw its commit return: the commit happened before, so this start
  // understates the latency by the reply's trip back (a fraction of a millisecond on loopback).
  const committedAt = new Map<string, number>();
  // Steady load: `rate` single-row transactions per second from the writers for `seconds`.
  await steadyWriters(writers, atRate, forSeconds, async (w) => {
    const id = await write(w);
    committedAt.set(id, Date.now());
  });
  await untilPublished(() => [...committedAt.keys()].filter((id) => !kafkaCommittedAt.has(id)).length);
  const written = await settleLatencies(handle, latencies, { nudger, relay }, writers);
  const committed = elapsedById(committedAt, kafkaCommittedAt);
  const figures = {
    p50: percentile(committed, 50),
    p99: percentile(committed, 99),
    writtenP50: percentile(written, 50),
    writtenP99: percentile(written, 99),
  };
  const ms = (n: number) => `${n.toFixed(0)} ms`.padStart(7);
  return {
    line: `${label.padEnd(44)} p50 ${ms(figures.p50)}  p99 ${ms(figures.p99)}   from tx start: p50 ${ms(figures.writtenP50)}  p99 ${ms(figures.writtenP99)}   (${committed.length} events; the first ${writers} after the start, from tx start: up to ${firstEvents.toFixed(0)} ms)`,
    ...figures,
  };
}

/** One memory case, in this process: drains a backlog and reports the peak RSS and heap. */
async function memoryCase(name: string, backlog: number): Promise<string> {
  const big = name !== 'small rows';
  const rows = big ? 400 : backlog;
  const rowBytes = big ? 256 * 1024 : payload.length;
  const url = await freshDatabase('evalbox_bench_relay_memory');
  const handle = createDb(url, { max: 4 });
  const topic = `bench-memory-${Date.now()}`;
  await ensureTopics(kafka, [{ topic, numPartitions: 6 }]);
  const value = big ? sql`jsonb_build_object('data', repeat('x', ${rowBytes}))` : sql`${payload}::jsonb`;
  await sql`INSERT INTO outbox (id, shard, topic, key, type, source, payload)
            SELECT gen_random_uuid(), outbox_shard_of('app-' || (i % 50)), ${topic}, 'app-' || (i % 50), 'evaluation.created', '/bench', ${value}
            FROM generate_series(1, ${rows}) i`.execute(handle.db);
  const bytesBound = name === 'big rows, rows bound only' ? Number.MAX_SAFE_INTEGER : undefined;
  const relay = createRelay({
    db: handle.db,
    databaseUrl: url,
    createProducer: producerFor('transactional', `bench-${topic}`),
    logger: silentLogger(),
    settings: settings(bytesBound === undefined ? {} : { batchBytes: bytesBound }),
  });
  let published = 0;
  relay.events.on('relay:batchPublished', (e) => (published += e.rows));
  const peak = { rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed };
  const before = peak.rss;
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    peak.rss = Math.max(peak.rss, m.rss);
    peak.heap = Math.max(peak.heap, m.heapUsed);
  }, 20);
  const started = Date.now();
  await relay.start();
  while (published < rows) await new Promise((r) => setTimeout(r, 20));
  const secs = (Date.now() - started) / 1000;
  clearInterval(sampler);
  await relay.stop();
  await handle.close();
  const mb = (n: number) => (n / 1024 / 1024).toFixed(0);
  return `${name.padEnd(28)} ${rows} rows of ${(rowBytes / 1024).toFixed(1)} kB: peak RSS ${mb(peak.rss)} MB (${mb(before)} MB before), peak heap ${mb(peak.heap)} MB, ${(rows / secs).toFixed(0)} events/s`;
}

if (values['memory-case']) {
  process.stdout.write(`${await memoryCase(values['memory-case'], events)}\n`);
  process.exit(0);
}
if (values.memory) {
  const lines = [
    `relay memory — ${new Date().toISOString()}`,
    `machine: ${machine()}`,
    `load average: ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  ];
  for (const name of ['small rows', 'big rows, rows bound only', 'big rows, bytes bound']) {
    const child = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--memory-case', name, '--events', values.memory], {
      encoding: 'utf8',
      env: process.env,
    });
    lines.push(`  ${child.status === 0 ? child.stdout.trim() : `${name}: failed ${child.stderr.slice(-400)}`}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  process.exit(0);
}

// Alternating rounds, so both modes see the same machine load.
const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
const through: string[] = [];
const transactional: { relay: number; kcat: number }[] = [];
const startLoad = loadAverage();
for (let round = 0; round < rounds; round++) {
  for (const mode of ['transactional', 'idempotent'] as const) {
    process.stderr.write(`relay bench: throughput round ${round + 1}/${rounds}, ${mode}\n`);
    const t = await throughput(mode);
    if (mode === 'transactional') transactional.push(t);
    through.push(`  ${mode.padEnd(13)} relay ${t.relay.toFixed(0)} events/s   kcat -P ${t.kcat.toFixed(0)} msgs/s   ratio ${(t.relay / t.kcat).toFixed(2)}`);
  }
}
process.stderr.write('relay bench: commit→Kafka-commit latency\n');
const naivePoller = { wakeup: 'poll', pollMinMs: 1000, pollMaxMs: 1000 } as const;
const notify = await latency('nudge, transactional', { wakeup: 'notify' });
const notifyIdempotent = await latency('nudge, idempotent (before)', { wakeup: 'notify' }, 'idempotent');
const poll = await latency('poll (adaptive 5..500 ms), transactional', { wakeup: 'poll' });
const naive = await latency('naive poller (1 s when idle), transactional', naivePoller);
const lowNotify = await latency(`nudge, transactional, ${lowRate}/s`, { wakeup: 'notify' }, 'transactional', lowRate, lowSeconds);
const lowNaive = await latency(`naive poller, ${lowRate}/s`, naivePoller, 'transactional', lowRate, lowSeconds);
const lines = [
  `relay benchmark — ${new Date().toISOString()}`,
  `machine: ${machine()}; load average at start ${startLoad}, at end ${loadAverage()}`,
  `throughput: ${events} events of ${payload.length} bytes, 50 keys, 6 partitions, batch ${settings({}).batchSize}`,
  ...through,
  `row committed → its batch's Kafka commit returned (read_committed consumers see it once the broker has written the markers), ${seconds} s at ${rate} events/s, then ${lowSeconds} s at ${lowRate}/s:`,
  ...[notify, notifyIdempotent, poll, naive, lowNotify, lowNaive].map((l) => `  ${l.line}`),
];
process.stdout.write(`${lines.join('\n')}\n`);
const best = <T>(xs: T[], f: (x: T) => number) => Math.max(...xs.map(f));
reportFigures([
  {
    figure: `relay throughput (transactional), best of ${rounds}`,
    value: best(transactional, (t) => t.relay),
    unit: 'events/s',
    reference: 'kcat -P, same messages (idempotent, acks=all)',
    referenceValue: best(transactional, (t) => t.kcat),
  },
  {
    figure: `relay commit→Kafka-commit p50 at ${rate}/s (nudge)`,
    value: notify.p50,
    unit: 'ms',
    reference: 'the same with a naive 1 s poller',
    referenceValue: naive.p50,
    lowerIsBetter: true,
  },
  {
    figure: `relay commit→Kafka-commit p50 at ${lowRate}/s (nudge)`,
    value: lowNotify.p50,
    unit: 'ms',
    reference: 'the same with a naive 1 s poller',
    referenceValue: lowNaive.p50,
    lowerIsBetter: true,
  },
  {
    figure: `relay commit→Kafka-commit p99 at ${lowRate}/s (nudge)`,
    value: lowNotify.p99,
    unit: 'ms',
    reference: 'the same with a naive 1 s poller',
    referenceValue: lowNaive.p99,
    lowerIsBetter: true,
  },
]);
process.exit(0);
