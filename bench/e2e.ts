// Benchmark: the whole pipeline on one machine, as a user sees it: the API (group commit on), the
// relay and the scorer (the four heuristic dimensions) as separate processes.
//  1. Sustained rate: POSTs flat out from --connections for --seconds; the sustained rate is the
//     evaluations whose evaluation.scored event reached Kafka, per second, from the first POST to
//     the last scored event received (the pipeline drains what the API accepted).
//  2. Latency at half that rate: POSTs at a fixed rate for --seconds; for each evaluation, the time
//     from its 202 (after its commit) to its evaluation.scored event received by a Kafka consumer
//     in this process (an upper bound on commit → scored-on-Kafka: it includes the fetch).
//   node --import tsx bench/e2e.ts [--seconds 20] [--connections 32]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { createKafka, ensureTopics } from '../src/kafka.js';
import { freePort } from '../src/stack/process.js';
import {
  elapsedById,
  evalbox,
  failOnExit,
  freshDatabase,
  loadAverage,
  machine,
  percentile,
  pgbenchIngestRows,
  reportFigures,
  requireEnv,
  runPgbench,
  waitForHttp,
} from './lib.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '20' }, connections: { type: 'string', default: '32' } } });
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const brokers = requireEnv('KAFKA_BROKERS');
const DIMENSIONS = ['groundedness', 'answer_relevance', 'pii_leak', 'toxicity'];
const body = JSON.stringify({
  prompt: 'What is the refund window for EU orders? Answer briefly.',
  response: 'EU orders can be returned within 30 days for a full refund.',
  context: ['EU customers may return any order within 30 days of delivery for a full refund.'],
  dimensions: DIMENSIONS,
});
const load = loadAverage;

const url = await freshDatabase('evalbox_bench_e2e_latency');
const suffix = Date.now().toString(36);
const topics = { events: `bench-e2e-events-${suffix}`, scores: `bench-e2e-scores-${suffix}`, dlt: `bench-e2e-dlt-${suffix}` };
const env = {
  EVALBOX_TOPIC_EVENTS: topics.events,
  EVALBOX_TOPIC_SCORES: topics.scores,
  EVALBOX_TOPIC_DLT: topics.dlt,
  DATABASE_URL: url,
  // One application is the whole load here: its quotas must not be what is measured.
  EVALBOX_API_RATE_PER_SECOND: '1000000',
  EVALBOX_API_RATE_BURST: '1000000',
  EVALBOX_API_CONCURRENCY_PER_APP: '100000',
  EVALBOX_API_POOL_SHARE_PER_APP: '20',
};
// The reference: Postgres committing the ingest's two rows (pgbench, no NOTIFY) at as many clients, before anything else runs.
const rows = pgbenchIngestRows('pgbench');
const scriptDir = fs.mkdtempSync(path.join(os.tmpdir(), 'evalbox-e2e-'));
const script = path.join(scriptDir, 'two-row-insert.sql');
fs.writeFileSync(
  script,
  `BEGIN;\nINSERT INTO evaluations (id, application_id, model_id, prompt, response, context, metadata, dimensions) VALUES (${rows.evaluationValues});\nINSERT INTO outbox (id, shard, topic, key, type, source, headers, payload) VALUES (${rows.outboxValues});\nEND;\n`,
);
process.stderr.write(`e2e bench: pgbench reference, ${connections} clients\n`);
const commitLimit = runPgbench(url, script, connections, Math.min(seconds, 8)).tps;
fs.rmSync(scriptDir, { recursive: true, force: true });
await new Promise<void>((resolve, reject) => {
  // Its rows are not the benchmark's: the scorer must not see them as a backlog.
  const client = new pg.Client({ connectionString: url });
  client
    .connect()
    .then(() => client.query(`DELETE FROM outbox WHERE key = 'pgbench'; DELETE FROM evaluations WHERE application_id = 'pgbench'`))
    .then(() => client.end())
    .then(() => resolve(), reject);
});

const kafka = createKafka(brokers, 'evalbox-bench-e2e');
await ensureTopics(kafka, [
  { topic: topics.events, numPartitions: 6 },
  { topic: topics.scores, numPartitions: 6 },
]);
const key = spawnSync('node', ['bin/evalbox.js', 'keys', 'create', '--app', 'bench', '--database-url', url], { encoding: 'utf8' }).stdout.trim();
const port = await freePort();
const admin = await freePort();
const procs = [evalbox(['api', '--port', String(port), '--admin-port', String(admin)], env), evalbox(['relay'], env), evalbox(['scorer'], env)];
const died = Promise.race(procs.map((p, i) => failOnExit(p, ['the api', 'the relay', 'the scorer'][i] as string)));
died.catch(() => {}); // observed in untilScored; the processes exit when stopped at the end
await waitForHttp(`http://127.0.0.1:${admin}/readyz`);

// Every evaluation.scored event, with the time this process received it.
const scoredAt = new Map<string, number>();
const consumer = kafka.consumer({ kafkaJS: { groupId: `bench-e2e-${suffix}`, fromBeginning: true }, 'fetch.wait.max.ms': 5 });
await consumer.connect();
await consumer.subscribe({ topic: topics.scores });
await consumer.run({
  eachMessage: async ({ message }) => {
    const { evaluationId } = JSON.parse(String(message.value)) as { evaluationId: string };
    if (!scoredAt.has(evaluationId)) scoredAt.set(evaluationId, Date.now());
  },
});
await new Promise((r) => setTimeout(r, 5000)); // the relay, the scorer and this consumer join

async function post(options: { seconds: number; rate?: number }) {
  const acceptedAt = new Map<string, number>();
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections,
    duration: options.seconds,
    ...(options.rate ? { overallRate: options.rate } : {}),
    requests: [
      {
        method: 'POST',
        path: '/v1/evaluations',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body,
        onResponse: (status: number, responseBody: string) => {
          if (status === 202) acceptedAt.set((JSON.parse(responseBody) as { evaluationId: string }).evaluationId, Date.now());
        },
      },
    ],
  });
  return { result, acceptedAt };
}

async function untilScored(ids: Iterable<string>, timeoutMs: number): Promise<number> {
  const wanted = [...ids];
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (wanted.every((id) => scoredAt.has(id))) return Date.now();
    await Promise.race([died, new Promise((r) => setTimeout(r, 50))]);
  }
  throw new Error(`${wanted.filter((id) => !scoredAt.has(id)).length} evaluations were not scored within ${timeoutMs} ms`);
}

const lines = [`end-to-end benchmark — ${new Date().toISOString()}`, `machine: ${machine()}; load average at start ${load()}`];

// 1. Flat out.
process.stderr.write(`e2e bench: flat out for ${seconds} s, then at half that rate\n`);
const started = Date.now();
const flat = await post({ seconds });
const postSeconds = (Date.now() - started) / 1000;
const drained = await untilScored(flat.acceptedAt.keys(), 600_000);
const sustained = flat.acceptedAt.size / ((drained - started) / 1000);
lines.push(
  `flat out, ${connections} connections for ${seconds} s: ${flat.acceptedAt.size} accepted, POST rate ${(flat.acceptedAt.size / postSeconds).toFixed(0)}/s (p50 ${flat.result.latency.p50} ms, p99 ${flat.result.latency.p99} ms, ${flat.result.non2xx} non-2xx);` +
    ` every evaluation.scored on Kafka ${((drained - started) / 1000).toFixed(1)} s after the first POST: sustained ${sustained.toFixed(0)} evaluations/s end to end`,
);

// 2. Half the sustained rate.
const rate = Math.max(1, Math.floor(sustained / 2));
const steady = await post({ seconds, rate });
await untilScored(steady.acceptedAt.keys(), 120_000);
const latencies = elapsedById(steady.acceptedAt, scoredAt);
lines.push(
  `at ${rate} POST/s (half) for ${seconds} s: ${steady.acceptedAt.size} evaluations; 202 → evaluation.scored received from Kafka: p50 ${percentile(latencies, 50).toFixed(0)} ms, p99 ${percentile(latencies, 99).toFixed(0)} ms, max ${(latencies[latencies.length - 1] ?? NaN).toFixed(0)} ms (POST p50 ${steady.result.latency.p50} ms, p99 ${steady.result.latency.p99} ms)`,
);
lines.push(`load average at end ${load()}`);

await consumer.disconnect();
for (const p of procs) p.kill('SIGTERM');
process.stdout.write(`${lines.join('\n')}\n`);
reportFigures([
  {
    figure: `end to end, sustained (POST → evaluation.scored on Kafka), ${connections} connections`,
    value: sustained,
    unit: 'evaluations/s',
    reference: `pgbench 2-row tx, no NOTIFY, ${connections} clients`,
    referenceValue: commitLimit,
  },
]);
process.exit(0);
