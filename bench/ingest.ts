// Benchmark: sustained POST /v1/evaluations throughput and latency (autocannon against the real
// API process) versus pgbench running the same two-row INSERT transaction (evaluation row +
// outbox row of the same sizes) against the same Postgres with the same number of clients.
// The two alternate in rounds (API, pgbench, API, pgbench, …) so that load from anything else on
// the machine falls on both alike; the medians are compared. At the end every 202 is checked
// against the database: one evaluation row and one outbox row each.
//   eval "$(npx evalbox stack up)"; node --import tsx bench/ingest.ts [--seconds 10] [--rounds 3] [--connections 32] [--pool-size 16]
import autocannon from 'autocannon';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { findPostgresBinDir } from '../src/stack/postgres.js';
import { freePort } from '../src/stack/process.js';
import { evalbox, freshDatabase, machine, percentile, waitForHttp } from './lib.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    'pool-size': { type: 'string', default: '16' },
  },
});
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const connections = Number(values.connections);

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

const url = await freshDatabase('evalbox_bench_ingest');
const key = spawnSync('node', ['bin/evalbox.js', 'keys', 'create', '--app', 'bench', '--database-url', url], { encoding: 'utf8' }).stdout.trim();
const port = await freePort();
const adminPort = await freePort();
const api = evalbox(['api', '--port', String(port), '--admin-port', String(adminPort), '--database-url', url, '--pool-size', values['pool-size']]);
await waitForHttp(`http://127.0.0.1:${adminPort}/readyz`);

// Where the CPU goes: the machine's busy share (/proc/stat), the API process's CPU
// (/proc/PID/stat) and this process's, which is autocannon's load generation.
const CLOCK_TICKS_PER_S = 100;
function machineTicks(): { busy: number; total: number } {
  const fields = (fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] as string).trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}
function processCpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S) * 1000;
}
interface Phase {
  rate: number;
  p50: number;
  p99: number;
  busy: number;
  /** CPU milliseconds per request or transaction: the server (API process) and the load generator. */
  serverMs?: number;
  clientMs?: number;
}
function cpuMeter() {
  const m0 = machineTicks();
  const api0 = processCpuMs(api.pid as number);
  const self0 = process.cpuUsage();
  return (count: number) => {
    const m1 = machineTicks();
    const self = process.cpuUsage(self0);
    return {
      busy: (m1.busy - m0.busy) / (m1.total - m0.total),
      serverMs: (processCpuMs(api.pid as number) - api0) / count,
      clientMs: (self.user + self.system) / 1000 / count,
    };
  };
}

let accepted = 0;
let failed = 0;
let apiPhases = 0;
async function runApi(duration: number): Promise<Phase> {
  const meter = cpuMeter();
  const result = await autocannon({
    url: `http://127.0.0.1:${port}/v1/evaluations`,
    method: 'POST',
    connections,
    duration,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  apiPhases++;
  accepted += result['2xx'];
  failed += result.non2xx + result.errors + result.timeouts;
  return { rate: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, ...meter(result.requests.total) };
}

// pgbench: the same two rows, same sizes, one transaction per client loop, prepared statements.
const evalPayload = JSON.stringify({
  schemaVersion: 1,
  evaluationId: '00000000-0000-7000-8000-000000000000',
  applicationId: 'bench',
  ...body,
  reference: null,
  dimensions: ['groundedness', 'answer_relevance', 'pii_leak', 'toxicity'],
  createdAt: new Date().toISOString(),
});
// pgbench reads ":name" as a variable, so text is passed base64-encoded (no colons).
const quote = (s: string) => `convert_from(decode('${Buffer.from(s).toString('base64')}', 'base64'), 'UTF8')`;
const script = `BEGIN;
INSERT INTO evaluations (id, application_id, model_id, prompt, response, context, metadata, dimensions) VALUES (gen_random_uuid(), 'pgbench', ${quote(body.modelId)}, ${quote(body.prompt)}, ${quote(body.response)}, ${quote(JSON.stringify(body.context))}::jsonb, ${quote(JSON.stringify(body.metadata))}::jsonb, '{groundedness,answer_relevance,pii_leak,toxicity}');
INSERT INTO outbox (id, shard, topic, key, type, source, headers, payload) VALUES (gen_random_uuid(), outbox_shard_of('pgbench'), 'llm-evaluation-events', 'pgbench', 'evaluation.created', '/evalbox/api', '{}', ${quote(evalPayload)}::jsonb);
END;
`;
// For the analysis, not the target: the API's own statement (both rows in one data-modifying
// CTE, one round trip) under pgbench, which separates the cost of HTTP and Node from the cost
// of the round trips the transaction form needs.
const cteScript = `WITH evaluation AS (
  INSERT INTO evaluations (id, application_id, model_id, prompt, response, context, metadata, dimensions) VALUES (gen_random_uuid(), 'pgbench-cte', ${quote(body.modelId)}, ${quote(body.prompt)}, ${quote(body.response)}, ${quote(JSON.stringify(body.context))}::jsonb, ${quote(JSON.stringify(body.metadata))}::jsonb, '{groundedness,answer_relevance,pii_leak,toxicity}')
  ON CONFLICT (application_id, idempotency_key) DO NOTHING RETURNING id
), event AS (
  INSERT INTO outbox (id, shard, topic, key, type, source, headers, payload) SELECT gen_random_uuid(), outbox_shard_of('pgbench-cte'), 'llm-evaluation-events', 'pgbench-cte', 'evaluation.created', '/evalbox/api', '{}', ${quote(evalPayload)}::jsonb FROM evaluation
) SELECT id FROM evaluation;
`.replace(/\n\s*/g, ' ');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'evalbox-ingest-'));
const scriptFile = path.join(work, 'two-row-insert.sql');
fs.writeFileSync(scriptFile, script);
const cteScriptFile = path.join(work, 'one-statement-cte.sql');
fs.writeFileSync(cteScriptFile, `${cteScript.trim()}\n`);
const pgbench = path.join(findPostgresBinDir() as string, 'pgbench');
const u = new URL(url);

function runPgbench(duration: number, file = scriptFile): Phase {
  const m0 = machineTicks();
  const logDir = fs.mkdtempSync(path.join(work, 'log-'));
  const run = spawnSync(
    pgbench,
    [
      '-n',
      '-M',
      'prepared',
      '-c',
      String(connections),
      '-j',
      '2',
      '-T',
      String(duration),
      '-f',
      file,
      '-l',
      `--log-prefix=${path.join(logDir, 'tx')}`,
      '-h',
      u.hostname,
      '-p',
      u.port,
      '-U',
      u.username,
      u.pathname.slice(1),
    ],
    { encoding: 'utf8', cwd: logDir },
  );
  if (run.status !== 0) throw new Error(`pgbench failed: ${run.stderr}`);
  const m1 = machineTicks();
  // Per-transaction log lines: client_id transaction_no time_us script_no epoch epoch_us.
  const latencies = fs
    .readdirSync(logDir)
    .flatMap((file) => fs.readFileSync(path.join(logDir, file), 'utf8').trim().split('\n'))
    .map((line) => Number(line.split(' ')[2]) / 1000)
    .sort((a, b) => a - b);
  return {
    rate: Number(/tps = ([\d.]+)/.exec(run.stdout)?.[1]),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    busy: (m1.busy - m0.busy) / (m1.total - m0.total),
  };
}

// Warm up both (JIT, connections, prepared statements, buffers), then alternate.
await runApi(2);
runPgbench(2);
runPgbench(2, cteScriptFile);
const apiRounds: Phase[] = [];
const pgRounds: Phase[] = [];
const cteRounds: Phase[] = [];
for (let round = 0; round < rounds; round++) {
  apiRounds.push(await runApi(seconds));
  pgRounds.push(runPgbench(seconds));
  cteRounds.push(runPgbench(seconds, cteScriptFile));
}
api.kill('SIGTERM');
fs.rmSync(work, { recursive: true, force: true });

// Accepted means durable: every 202 left exactly one evaluation row and one outbox row. A few
// more rows than counted 202s is expected: autocannon stops counting when its clock runs out,
// while the requests then in flight (at most one per connection per phase) still complete.
const client = new pg.Client({ connectionString: url });
await client.connect();
const counts = (
  await client.query<{ evaluations: number; outbox: number }>(
    `SELECT (SELECT count(*)::int FROM evaluations WHERE application_id = 'bench') AS evaluations, (SELECT count(*)::int FROM outbox WHERE key = 'bench') AS outbox`,
  )
).rows[0] as { evaluations: number; outbox: number };
await client.end();

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const summary = (rs: Phase[]): Phase => ({
  rate: median(rs.map((r) => r.rate)),
  p50: median(rs.map((r) => r.p50)),
  p99: median(rs.map((r) => r.p99)),
  busy: median(rs.map((r) => r.busy)),
  serverMs: median(rs.map((r) => r.serverMs ?? 0)),
  clientMs: median(rs.map((r) => r.clientMs ?? 0)),
});
const a = summary(apiRounds);
const b = summary(pgRounds);
const cte = summary(cteRounds);
const fmt = (r: Phase) => `${r.rate.toFixed(0)}/s  p50 ${r.p50.toFixed(1)} ms  p99 ${r.p99.toFixed(1)} ms  (machine CPU ${(r.busy * 100).toFixed(0)}% busy)`;
const lines = [
  `ingest benchmark — ${new Date().toISOString()}`,
  `machine: ${machine()}`,
  `load: ${connections} client connections, ${rounds} alternating rounds of ${seconds} s each; API pool ${values['pool-size']} connections; body ${JSON.stringify(body).length} bytes`,
  ...apiRounds.map(
    (r, i) =>
      `  round ${i + 1}: API ${fmt(r)}\n           pgbench ${fmt(pgRounds[i] as Phase)}  ratio ${(r.rate / (pgRounds[i] as Phase).rate).toFixed(2)}\n           pgbench CTE ${fmt(cteRounds[i] as Phase)}`,
  ),
  `API  POST /v1/evaluations (median): ${fmt(a)}`,
  `pgbench same 2-row INSERT transaction (median): ${fmt(b)}`,
  `ratio API/pgbench: ${(a.rate / b.rate).toFixed(2)}`,
  `for comparison, pgbench running the API's one-statement CTE (median): ${fmt(cte)}; API/that ${(a.rate / cte.rate).toFixed(2)}`,
  `CPU per request in the API phase: API process ${(a.serverMs as number).toFixed(2)} ms, autocannon ${(a.clientMs as number).toFixed(2)} ms (2 cores = ${(2000 / a.rate).toFixed(2)} CPU-ms available per request at this rate)`,
  `durability check: ${accepted} responses 202 (+ up to ${connections * apiPhases} uncounted in flight at phase ends), ${failed} other/errors; ${counts.evaluations} evaluation rows, ${counts.outbox} outbox rows`,
];
process.stdout.write(`${lines.join('\n')}\n`);
const uncounted = counts.evaluations - accepted;
if (counts.outbox !== counts.evaluations || uncounted < 0 || uncounted > connections * apiPhases || failed > 0) {
  process.stderr.write('durability check FAILED: rows and 202s differ\n');
  process.exitCode = 1;
}
