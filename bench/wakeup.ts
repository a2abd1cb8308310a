// Benchmark: how the relay is woken, and what each way costs the writers.
// 1. Commit cost: pgbench runs the ingest's two-row transaction at 1, 8, 32 and 128 clients with
//    each wake-up: none (poll only), NOTIFY inside the transaction (what the old trigger did),
//    NOTIFY in a transaction of its own after each commit (uncoalesced: the worst case of the
//    writer-side nudge), and a non-transactional logical-decoding message inside the transaction.
//    Modes alternate within each round, so load from elsewhere falls on all of them alike.
// 2. Latency: the relay in this process, writers at a low total rate spread over W concurrent
//    writers, commit→Kafka-ack p50/p99 for the nudge after commit (coalesced, src/outbox-wakeup.ts),
//    NOTIFY inside the transaction, and the adaptive poll alone.
//   node --import tsx bench/wakeup.ts [--seconds 5] [--rounds 2] [--clients 1,8,32,128] [--rate 200]
import { spawnSync } from 'node:child_process';
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
import { findPostgresBinDir } from '../src/stack/postgres.js';
import { freshDatabase, machine, percentile, requireEnv } from './lib.js';

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
const load = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

const body = {
  prompt: 'Summarise the refund policy for orders shipped to the EU in two sentences. '.repeat(3),
  response:
    'Orders shipped to the EU can be returned within 30 days for a full refund. Refunds are issued to the original payment method within 14 days of receipt. '.repeat(
      2,
    ),
  context: ['Refund policy: EU customers may return any order within 30 days of delivery. Refunds go to the original payment method within 14 days.'],
  modelId: 'gpt-4o-mini',
  metadata: { team: 'support', release: '2026.11' },
};
const payload = JSON.stringify({ schemaVersion: 1, evaluationId: '00000000-0000-7000-8000-000000000000', applicationId: 'bench', ...body });
const quote = (s: string) => `convert_from(decode('${Buffer.from(s).toString('base64')}', 'base64'), 'UTF8')`;
const twoRows = `INSERT INTO evaluations (id, application_id, model_id, prompt, response, context, metadata, dimensions) VALUES (gen_random_uuid(), 'pgbench', ${quote(body.modelId)}, ${quote(body.prompt)}, ${quote(body.response)}, ${quote(JSON.stringify(body.context))}::jsonb, ${quote(JSON.stringify(body.metadata))}::jsonb, '{groundedness,answer_relevance,pii_leak,toxicity}');
INSERT INTO outbox (id, shard, topic, key, type, source, headers, payload) VALUES (gen_random_uuid(), outbox_shard_of('pgbench'), 'llm-evaluation-events', 'pgbench', 'evaluation.created', '/evalbox/api', '{}', ${quote(payload)}::jsonb);`;
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
  const pgbench = path.join(findPostgresBinDir() as string, 'pgbench');
  const u = new URL(url);
  const runPgbench = (file: string, clients: number, duration: number): number => {
    const run = spawnSync(
      pgbench,
      [
        '-n',
        '-M',
        'prepared',
        '-c',
        String(clients),
        '-j',
        '2',
        '-T',
        String(duration),
        '-f',
        file,
        '-h',
        u.hostname,
        '-p',
        u.port,
        '-U',
        u.username,
        u.pathname.slice(1),
      ],
      { encoding: 'utf8' },
    );
    if (run.status !== 0) throw new Error(`pgbench failed: ${run.stderr}`);
    return Number(/tps = ([\d.]+)/.exec(run.stdout)?.[1]);
  };
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
  const settings = (wakeup: 'notify' | 'poll'): RelaySettings => ({
    batchSize: 2000,
    wakeup,
    pollMinMs: 5,
    pollMaxMs: 500,
    leaseTtlMs: 3000,
    heartbeatMs: 1000,
    retentionHours: 72,
    partitionsAhead: 2,
    maxShards: 64,
    horizonReportAfterMs: 5000,
    partitionMaintenanceMs: 600_000,
  });
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
    const deadline = Date.now() + seconds * 1000;
    const interval = (writers * 1000) / rate;
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        let next = Date.now() + (w * interval) / writers;
        await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
        while (Date.now() < deadline) {
          await insert.execute(handle.db);
          nudger.nudge([0]);
          next += interval;
          await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
        }
      }),
    );
    const expected = Number((await sql<{ n: string }>`SELECT count(*) AS n FROM outbox`.execute(handle.db)).rows[0]?.n);
    while (latencies.length < expected) await new Promise((r) => setTimeout(r, 50));
    await nudger.idle();
    await relay.stop();
    await handle.close();
    latencies.sort((a, b) => a - b);
    return `p50 ${percentile(latencies, 50).toFixed(1)} / p99 ${percentile(latencies, 99).toFixed(1)} ms (${latencies.length})`;
  };
  const modes: [string, string][] = [
    ['nudge', 'NOTIFY after commit (coalesced)'],
    ['notify-in-tx', 'NOTIFY in the transaction'],
    ['poll', 'adaptive poll 5..500 ms alone'],
  ];
  lines.push(`commit→Kafka-ack latency, relay in this process, ${rate} events/s in total for ${seconds} s, spread over W writers:`);
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
