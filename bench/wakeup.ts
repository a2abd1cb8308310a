// Benchmark: how the relay is woken, and what each way costs the writers.
// 1. Commit cost: pgbench runs the ingest's two-row transaction at 1, 8, 32 and 128 clients with
//    each wake-up: none (poll only), NOTIFY inside the transaction (what the old trigger did),
//    NOTIFY in a transaction of its own after each commit (uncoalesced: the worst case of the
//    writer-side nudge), and a non-transactional logical-decoding message inside the transaction.
//    Modes alternate within each round, so load from elsewhere falls on all of them alike.
// 2. Latency: the relay in this process, writers at a low total rate spread over W concurrent
//    writers, row written (its transaction's start) → Kafka commit p50/p99 for the nudge after
//    commit (coalesced, src/outbox-wakeup.ts), NOTIFY inside the transaction, and the adaptive
//    poll alone.
//   node --import tsx bench/wakeup.ts [--seconds 5] [--rounds 2] [--clients 1,8,32,128] [--rate 200]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import pg from 'pg';
import { createRelay, type RelaySettings } from '../outbox-relay/relay.js';
import { createDb } from '../src/db/index.js';
import { createKafka, createTransactionalProducer, ensureTopics } from '../src/kafka.js';
import { silentLogger } from '../src/logging.js';
import { createOutboxNudger, NO_NUDGES, type OutboxNudger } from '../src/outbox-wakeup.js';
import {
  freshDatabase,
  INGEST_BODY,
  loadAverage,
  machine,
  percentile,
  pgbenchIngestRows,
  relaySettings,
  requireEnv,
  runPgbench as pgbench,
  settleLatencies,
  steadyWriters,
} from './lib.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '2' },
    clients: { type: 'string', default: '1,8,32,128' },
    rate: { type: 'string', default: '200' },
    'skip-commit': { type: 'boolean', default: false },
    'skip-latency': { type: 'boolean', default: false },
  },
});
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const clientCounts = values.clients.split(',').map(Number);
const rate = Number(values.rate);
const brokers = requireEnv('KAFKA_BROKERS');
const load = loadAverage;

const body = INGEST_BODY;
const payload = JSON.stringify({ schemaVersion: 1, evaluationId: '00000000-0000-7000-8000-000000000000', applicationId: 'bench', ...body });
const rows = pgbenchIngestRows('pgbench', body);
const twoRows = `INSERT INTO evaluations (id, application_id, model_id, prompt, response, context, metadata, dimensions) VALUES (${rows.evaluationValues});
INSERT INTO outbox (id, shard, topic, key, type, source, headers, payload) VALUES (${rows.outboxValues});`;
const MODES: Record<string, string> = {
  'none (poll only)': `BEGIN;\n${twoRows}\nEND;\n`,
  'NOTIFY in the transaction': `BEGIN;\n${twoRows}\nSELECT pg_notify('evalbox_outbox', '0');\nEND;\n`,
  'NOTIFY after commit, own tx': `BEGIN;\n${twoRows}\nEND;\nSELECT set_config('synchronous_commit', 'off', true), pg_notify('evalbox_outbox', '0');\n`,
  'logical message in the tx': `BEGIN;\n${twoRows}\nSELECT pg_logical_emit_message(false, 'evalbox_outbox', '0');\nEND;\n`,
};

const lines: string[] = [`wake-up benchmark — ${new Date().toISOString()}`, `machine: ${machine()}; load average at start ${load()}`];

if (!values['skip-commit']) {
  const url = await freshDatabase('evalbox_bench_wakeup');
  // Someone LISTENs, as the relay does, so notifications are queued and read as in production.
  const listener = new pg.Client({ connectionString: url });
  await listener.connect();
  await listener.query('LISTEN evalbox_outbox');
  let notifications = 0;
  listener.on('notification', () => notifications++);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'evalbox-wakeup-'));
  const files = Object.fromEntries(
    Object.entries(MODES).map(([mode, script], i) => {
      const file = path.join(work, `mode-${i}.sql`);
      fs.writeFileSync(file, script);
      return [mode, file];
    }),
  );
  const runPgbench = (file: string, clients: number, duration: number): number => pgbench(url, file, clients, duration).tps;
  for (const file of Object.values(files)) runPgbench(file, 8, 1);
  const results = new Map<string, number[]>();
  for (let round = 0; round < rounds; round++) {
    for (const clients of clientCounts) {
      for (const [mode, file] of Object.entries(files)) {
        const key = `${clients}|${mode}`;
        results.set(key, [...(results.get(key) ?? []), runPgbench(file, clients, seconds)]);
      }
    }
  }
  await listener.end();
  fs.rmSync(work, { recursive: true, force: true });
  lines.push(
    `commit cost: pgbench, the two-row ingest transaction, ${rounds} alternating rounds of ${seconds} s per cell, transactions/s (each round's figure; ${notifications} notifications received)`,
  );
  lines.push(
    `  ${'clients'.padEnd(8)}${Object.keys(MODES)
      .map((m) => m.padEnd(32))
      .join('')}`,
  );
  for (const clients of clientCounts) {
    lines.push(
      `  ${String(clients).padEnd(8)}${Object.keys(MODES)
        .map((mode) =>
          (results.get(`${clients}|${mode}`) ?? [])
            .map((r) => r.toFixed(0))
            .join(' / ')
            .padEnd(32),
        )
        .join('')}`,
    );
  }
}

if (!values['skip-latency']) {
  const kafka = createKafka(brokers, 'evalbox-bench');
  const settings = (wakeup: 'notify' | 'poll'): RelaySettings => relaySettings({ batchSize: 2000, wakeup });
  const latency = async (mode: string, writers: number): Promise<string> => {
    const url = await freshDatabase('evalbox_bench_wakeup_latency');
    const handle = createDb(url, { max: Math.min(writers, 32) + 2 });
    const topic = `bench-wakeup-${Date.now()}`;
    await ensureTopics(kafka, [{ topic, numPartitions: 6 }]);
    const relay = createRelay({
      db: handle.db,
      databaseUrl: url,
      createProducer: (shard) => createTransactionalProducer(brokers, { transactionalId: `bench-wakeup.${topic}.shard-${shard}`, clientId: 'bench-wakeup' }),
      logger: silentLogger(),
      settings: settings(mode === 'poll' ? 'poll' : 'notify'),
    });
    const nudger: OutboxNudger = mode === 'nudge' ? createOutboxNudger(handle.db) : NO_NUDGES;
    const latencies: number[] = [];
    relay.events.on('relay:batchPublished', ({ publishLatencies }) => latencies.push(...publishLatencies.map((s) => s * 1000)));
    await relay.start();
    await new Promise((r) => setTimeout(r, 1000)); // let the poll back off as on an idle system
    const insert =
      mode === 'notify-in-tx'
        ? sql`WITH o AS (INSERT INTO outbox (id, shard, topic, key, type, source, payload) VALUES (gen_random_uuid(), outbox_shard_of('bench'), ${topic}, 'bench', 'evaluation.created', '/bench', ${payload}::jsonb) RETURNING shard) SELECT pg_notify('evalbox_outbox', shard::text) FROM o`
        : sql`INSERT INTO outbox (id, shard, topic, key, type, source, payload) VALUES (gen_random_uuid(), outbox_shard_of('bench'), ${topic}, 'bench', 'evaluation.created', '/bench', ${payload}::jsonb)`;
    await steadyWriters(writers, rate, seconds, async () => {
      await insert.execute(handle.db);
      nudger.nudge([0]);
    });
    const sorted = await settleLatencies(handle, latencies, { nudger, relay });
    return `p50 ${percentile(sorted, 50).toFixed(1)} / p99 ${percentile(sorted, 99).toFixed(1)} ms (${sorted.length})`;
  };
  const modes: [string, string][] = [
    ['nudge', 'NOTIFY after commit (coalesced)'],
    ['notify-in-tx', 'NOTIFY in the transaction'],
    ['poll', 'adaptive poll 5..500 ms alone'],
  ];
  lines.push(`row written → Kafka commit latency, relay in this process, ${rate} events/s in total for ${seconds} s, spread over W writers:`);
  lines.push(`  ${'W'.padEnd(6)}${modes.map(([, label]) => label.padEnd(40)).join('')}`);
  for (const writers of clientCounts) {
    const cells: string[] = [];
    for (const [mode] of modes) cells.push((await latency(mode, writers)).padEnd(40));
    lines.push(`  ${String(writers).padEnd(6)}${cells.join('')}`);
  }
}
lines.push(`load average at end ${load()}`);
process.stdout.write(`${lines.join('\n')}\n`);
process.exit(0);
