// Benchmark: sustained POST /v1/evaluations throughput and latency (wrk, or autocannon, against real
// API processes: one with group commit on per setting compared, and one with it off) against the physical limit: pgbench
// running the same two-row INSERT transaction (evaluation row + outbox row of the same sizes,
// nothing else: no NOTIFY) and, separately, the same rows as multi-row group inserts (the limit
// for group commit), on the same Postgres with the same number of clients, at several client
// counts. All phases alternate within each round, so load from anything else on the machine falls
// on all of them alike; ratios are taken within a round. At the end every 202 is checked against
// the database: one evaluation row and one outbox row each. --in-flight and --max-rows (lists)
// start one group-commit API per combination of EVALBOX_API_GROUP_MAX_IN_FLIGHT (0 = no bound)
// and EVALBOX_API_GROUP_COMMIT_MAX_ROWS, all alternating in the same rounds; unset, the API's
// defaults. The figure reported to `npm run bench` is the first combination's.
// The load generator is wrk (compiled C, like pgbench on the reference side) unless
// --load-generator says otherwise; a list (wrk,autocannon) starts one group-commit API per
// generator. On two cores the client's own CPU is taken from the server: autocannon, in this Node
// process, spends a quarter to a third of the API's CPU per request, wrk half of autocannon's.
//   eval "$(npx evalbox stack up)"; node --import tsx bench/ingest.ts [--seconds 10] [--rounds 3] [--clients 8,32,128] [--pool-size 16] [--group-rows 16]
//     [--in-flight 1,2,4,0] [--max-rows 64,256] [--skip-off] [--warmup-seconds 20] [--load-generator wrk,autocannon]
import autocannon from 'autocannon';
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { freePort } from '../src/stack/process.js';
import {
  evalbox,
  freshDatabase,
  INGEST_BODY,
  loadAverage,
  machine,
  median,
  percentile,
  pgbenchIngestRows,
  reportFigures,
  runPgbench as pgbench,
  waitForHttp,
} from './lib.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    clients: { type: 'string', default: '8,32,128' },
    'pool-size': { type: 'string', default: '16' },
    'group-rows': { type: 'string', default: '16' },
    'window-ms': { type: 'string', default: '1' },
    'in-flight': { type: 'string', default: '' },
    'max-rows': { type: 'string', default: '' },
    'skip-off': { type: 'boolean', default: false },
    'warmup-seconds': { type: 'string', default: '20' },
    'load-generator': { type: 'string', default: 'wrk' },
  },
});
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const clientCounts = values.clients.split(',').map(Number);
const groupRows = Number(values['group-rows']);
const warmupSeconds = Number(values['warmup-seconds']);
if (!Number.isFinite(warmupSeconds) || warmupSeconds < 1) throw new Error(`--warmup-seconds must be a number of seconds >= 1, not ${values['warmup-seconds']}`);
const GENERATORS = ['wrk', 'autocannon'] as const;
type Generator = (typeof GENERATORS)[number];
const generators = values['load-generator'].split(',').map((g) => {
  if (!(GENERATORS as readonly string[]).includes(g)) throw new Error(`--load-generator takes ${GENERATORS.join(' or ')} (or both, comma-separated), not ${g}`);
  return g as Generator;
});

// Before any API process starts: a missing wrk would otherwise fail the first phase and leave them running.
if (generators.includes('wrk') && spawnSync('wrk', ['-v']).error)
  throw new Error('wrk is not installed: run scripts/bootstrap, or pass --load-generator autocannon');
const body = INGEST_BODY;

const url = await freshDatabase('evalbox_bench_ingest');
const UNLIMITED = {
  EVALBOX_API_RATE_PER_SECOND: '1000000',
  EVALBOX_API_RATE_BURST: '1000000',
  EVALBOX_API_CONCURRENCY_PER_APP: '100000',
  EVALBOX_API_POOL_SHARE_PER_APP: values['pool-size'],
};
const keyFor = (app: string) =>
  spawnSync('node', ['bin/evalbox.js', 'keys', 'create', '--app', app, '--database-url', url], { encoding: 'utf8' }).stdout.trim();
interface ApiUnderTest {
  label: string;
  generator: Generator;
  app: string;
  key: string;
  port: number;
  process: ChildProcess;
}
async function startApi(
  label: string,
  generator: Generator,
  app: string,
  groupCommit: 'on' | 'off',
  group: { inFlight?: string; maxRows?: string } = {},
): Promise<ApiUnderTest> {
  const port = await freePort();
  const adminPort = await freePort();
  const child = evalbox(['api', '--port', String(port), '--admin-port', String(adminPort), '--database-url', url, '--pool-size', values['pool-size']], {
    EVALBOX_API_GROUP_COMMIT: groupCommit,
    EVALBOX_API_GROUP_COMMIT_WINDOW_MS: values['window-ms'],
    ...(group.inFlight === undefined ? {} : { EVALBOX_API_GROUP_MAX_IN_FLIGHT: group.inFlight }),
    ...(group.maxRows === undefined ? {} : { EVALBOX_API_GROUP_COMMIT_MAX_ROWS: group.maxRows }),
    // One application is the whole load here: its quotas must not be what is measured.
    ...UNLIMITED,
  });
  await waitForHttp(`http://127.0.0.1:${adminPort}/readyz`);
  return { label, generator, app, key: keyFor(app), port, process: child };
}
const listOf = (text: string): (string | undefined)[] => (text === '' ? [undefined] : text.split(','));
const groupApis: ApiUnderTest[] = [];
const generatorLabel = (g: Generator) => (generators.length > 1 ? ` via ${g}` : '');
for (const generator of generators)
  for (const inFlight of listOf(values['in-flight']))
    for (const maxRows of listOf(values['max-rows'])) {
      const label = `on K=${inFlight === undefined ? 'default' : inFlight === '0' ? 'unbounded' : inFlight} rows=${maxRows ?? 'default'}${generatorLabel(generator)}`;
      groupApis.push(await startApi(label, generator, `bench-group-${groupApis.length}`, 'on', { inFlight, maxRows }));
    }
const offApi = values['skip-off']
  ? undefined
  : await startApi(`off${generatorLabel(generators[0] as Generator)}`, generators[0] as Generator, 'bench-single', 'off');
const apis = offApi ? [...groupApis, offApi] : groupApis;

// Where the CPU goes: the machine's busy share (/proc/stat), the API process's CPU
// (/proc/PID/stat) and the load generator's (this process's for autocannon, wrk's own for wrk).
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
  /** Requests or rows per second. */
  rate: number;
  p50: number;
  p99: number;
  busy: number;
  /** CPU milliseconds per request: the API process and the load generator. */
  serverMs?: number;
  clientMs?: number;
  /** Rows per transaction the API's writes averaged in this phase. */
  rowsPerCommit?: number;
  /** One-minute load average when the phase started. */
  load: number;
}

const client = new pg.Client({ connectionString: url });
await client.connect();
const rowsAndCommits = async (app: string) =>
  (
    await client.query<{ rows: number; commits: number }>(
      'SELECT count(*)::int AS rows, count(DISTINCT xid)::int AS commits FROM evaluations WHERE application_id = $1',
      [app],
    )
  ).rows[0] as { rows: number; commits: number };

let accepted = 0;
let failed = 0;
let apiPhases = 0;
let maxConnections = 0;

/** What one load generator saw in one phase. */
interface LoadResult {
  /** Requests answered, whatever the status. */
  requests: number;
  accepted: number;
  /** Answers other than 2xx, connection errors and timeouts. */
  failed: number;
  rate: number;
  p50: number;
  p99: number;
  /** The load generator's own CPU milliseconds over the phase. */
  cpuMs: number;
}

async function loadWithAutocannon(api: ApiUnderTest, connections: number, duration: number): Promise<LoadResult> {
  const self0 = process.cpuUsage();
  const result = await autocannon({
    url: `http://127.0.0.1:${api.port}/v1/evaluations`,
    method: 'POST',
    connections,
    duration,
    headers: { authorization: `Bearer ${api.key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const self = process.cpuUsage(self0);
  return {
    requests: result.requests.total,
    accepted: result['2xx'],
    failed: result.non2xx + result.errors + result.timeouts,
    rate: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    cpuMs: (self.user + self.system) / 1000,
  };
}

// wrk posts the same body with the same headers; its done() hook prints the counts and the
// latency percentiles (microseconds) on one line, and the shell's `times` its CPU.
const luaString = (s: string) => `"${s.replace(/[\\"]/g, '\\$&').replace(/\n/g, '\\n')}"`;
function wrkScript(api: ApiUnderTest): string {
  const file = path.join(work, `wrk-${api.app}.lua`);
  fs.writeFileSync(
    file,
    `wrk.method = "POST"
wrk.body = ${luaString(JSON.stringify(body))}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = ${luaString(`Bearer ${api.key}`)}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("wrk-result %d %d %d %d %d %d %d %d %d\\n", summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
`,
  );
  return file;
}
function loadWithWrk(api: ApiUnderTest, connections: number, duration: number): LoadResult {
  const threads = Math.min(2, connections);
  const command = `wrk -t${threads} -c${connections} -d${duration}s --timeout 10s -s ${wrkScript(api)} http://127.0.0.1:${api.port}/v1/evaluations; status=$?; times; exit $status`;
  const run = spawnSync('bash', ['-c', command], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  const line = /wrk-result ([\d ]+)/.exec(run.stdout)?.[1];
  if (run.status !== 0 || line === undefined) throw new Error(`wrk failed (status ${run.status}): ${run.stderr}${run.stdout}`);
  const [requests, durationUs, connect, read, write, status, timeout, p50Us, p99Us] = line.trim().split(' ').map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  // `times` prints the shell's user/system time, then its children's: wrk's.
  const [user, system] = ((run.stdout.trim().split('\n').at(-1) ?? '').match(/(\d+)m([\d.]+)s/g) ?? []).map((t) => {
    const [, m, sec] = /(\d+)m([\d.]+)s/.exec(t) as RegExpExecArray;
    return (Number(m) * 60 + Number(sec)) * 1000;
  });
  const errors = connect + read + write + timeout;
  return {
    requests,
    accepted: requests - status,
    failed: status + errors,
    rate: requests / (durationUs / 1e6),
    p50: p50Us / 1000,
    p99: p99Us / 1000,
    cpuMs: (user ?? 0) + (system ?? 0),
  };
}

async function runApi(api: ApiUnderTest, connections: number, duration: number): Promise<Phase> {
  const load = os.loadavg()[0] as number;
  const m0 = machineTicks();
  const api0 = processCpuMs(api.process.pid as number);
  const before = await rowsAndCommits(api.app);
  const result = api.generator === 'wrk' ? loadWithWrk(api, connections, duration) : await loadWithAutocannon(api, connections, duration);
  const m1 = machineTicks();
  const serverMs = (processCpuMs(api.process.pid as number) - api0) / result.requests;
  await new Promise((r) => setTimeout(r, 200)); // the requests still in flight when the load generator stopped
  const after = await rowsAndCommits(api.app);
  apiPhases++;
  maxConnections = Math.max(maxConnections, connections);
  accepted += result.accepted;
  failed += result.failed;
  return {
    rate: result.rate,
    p50: result.p50,
    p99: result.p99,
    busy: (m1.busy - m0.busy) / (m1.total - m0.total),
    serverMs,
    clientMs: result.cpuMs / result.requests,
    rowsPerCommit: (after.rows - before.rows) / Math.max(1, after.commits - before.commits),
    load,
  };
}

// pgbench: the same two rows, same sizes, prepared statements, nothing else in the transaction.
const single = pgbenchIngestRows('pgbench', body);
const twoRowScript = `BEGIN;
INSERT INTO evaluations (id, application_id, model_id, prompt, response, context, metadata, dimensions) VALUES (${single.evaluationValues});
INSERT INTO outbox (id, shard, topic, key, type, source, headers, payload) VALUES (${single.outboxValues});
END;
`;
// The limit for group commit: G evaluation rows and their G outbox rows in one statement.
const grouped = pgbenchIngestRows('pgbench-group', body);
const groupScript = (rows: number) =>
  `WITH evaluation AS (
  INSERT INTO evaluations (id, application_id, model_id, prompt, response, context, metadata, dimensions) SELECT ${grouped.evaluationValues} FROM generate_series(1, ${rows}) RETURNING id
) INSERT INTO outbox (id, shard, topic, key, type, source, headers, payload) SELECT ${grouped.outboxValues} FROM evaluation;
`.replace(/\n\s*/g, ' ') + '\n';
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'evalbox-ingest-'));
const twoRowFile = path.join(work, 'two-row-insert.sql');
fs.writeFileSync(twoRowFile, twoRowScript);

function runPgbench(file: string, connections: number, duration: number, rowsPerTransaction = 1): Phase {
  const load = os.loadavg()[0] as number;
  const m0 = machineTicks();
  const run = pgbench(url, file, connections, duration, { latencies: true });
  const m1 = machineTicks();
  return {
    rate: run.tps * rowsPerTransaction,
    p50: percentile(run.latenciesMs, 50),
    p99: percentile(run.latenciesMs, 99),
    busy: (m1.busy - m0.busy) / (m1.total - m0.total),
    load,
  };
}
const groupFile = (connections: number) => {
  const rows = Math.min(groupRows, connections);
  const file = path.join(work, `group-${rows}.sql`);
  fs.writeFileSync(file, groupScript(rows));
  return { file, rows };
};

// Warm up (JIT, connections, prepared statements, buffers), then alternate every phase per round.
// A cold API process needs 20-30 s of load to reach its steady CPU per request (measured: 0.45
// CPU-ms per request in its first 6 s, 0.26-0.29 from the fourth 6 s on, the same as a process
// warmed for 30 s); pgbench, compiled C, has no such start. Unwarmed, the first rounds measured
// a cold API against a warm database.
for (const api of apis) await runApi(api, 32, warmupSeconds);
runPgbench(twoRowFile, 32, 2);
/** One round at one client count: each group-commit API (in groupApis' order), off, and the references. */
type Cell = { on: Phase[]; off?: Phase; pg: Phase; group: Phase; groupRows: number };
const cells = new Map<number, Cell[]>();
for (let round = 0; round < rounds; round++) {
  for (const connections of clientCounts) {
    process.stderr.write(`ingest bench: round ${round + 1}/${rounds}, ${connections} clients\n`);
    // The group-commit APIs take turns going first, so a load that grows during a round does not
    // always fall on the same one.
    const on: Phase[] = [];
    for (let k = 0; k < groupApis.length; k++) {
      const j = (k + round) % groupApis.length;
      on[j] = await runApi(groupApis[j] as ApiUnderTest, connections, seconds);
    }
    const pgPhase = runPgbench(twoRowFile, connections, seconds);
    const off = offApi ? await runApi(offApi, connections, seconds) : undefined;
    const g = groupFile(connections);
    const group = runPgbench(g.file, Math.max(1, Math.floor(connections / g.rows)), seconds, g.rows);
    cells.set(connections, [...(cells.get(connections) ?? []), { on, off, pg: pgPhase, group, groupRows: g.rows }]);
  }
}
for (const api of apis) api.process.kill('SIGTERM');
fs.rmSync(work, { recursive: true, force: true });

// Accepted means durable: every 202 left exactly one evaluation row and one outbox row. A few
// more rows than counted 202s is expected: the load generator stops counting when its clock runs out,
// while the requests then in flight (at most one per connection per phase) still complete.
const counts = (
  await client.query<{ evaluations: number; outbox: number }>(
    `SELECT (SELECT count(*)::int FROM evaluations WHERE application_id LIKE 'bench-%') AS evaluations, (SELECT count(*)::int FROM outbox WHERE key LIKE 'bench-%') AS outbox`,
  )
).rows[0] as { evaluations: number; outbox: number };
await client.end();

const fmt = (r: Phase, unit = '/s') =>
  `${r.rate.toFixed(0)}${unit}  load ${r.load.toFixed(1)}  p50 ${r.p50.toFixed(1)} ms  p99 ${r.p99.toFixed(1)} ms  (CPU ${(r.busy * 100).toFixed(0)}%${r.serverMs === undefined ? '' : `, API ${r.serverMs.toFixed(2)} ms/req, load generator ${(r.clientMs ?? 0).toFixed(2)} ms/req`}${r.rowsPerCommit === undefined ? '' : `, ${r.rowsPerCommit.toFixed(1)} rows/commit`})`;
const lines = [
  `ingest benchmark — ${new Date().toISOString()}`,
  `machine: ${machine()}; load average at end ${loadAverage()}`,
  `${rounds} alternating rounds of ${seconds} s per phase; API pool ${values['pool-size']} connections, group window ${values['window-ms']} ms; body ${JSON.stringify(body).length} bytes`,
  `group-commit APIs: ${groupApis.map((a) => a.label).join('; ')} (K = EVALBOX_API_GROUP_MAX_IN_FLIGHT, rows = EVALBOX_API_GROUP_COMMIT_MAX_ROWS; they take turns going first)`,
];
for (const connections of clientCounts) {
  const rs = cells.get(connections) as Cell[];
  lines.push(`${connections} clients:`);
  for (const [i, c] of rs.entries()) {
    const phases = [
      ...groupApis.map((api, j) => `API group ${api.label}  ${fmt(c.on[j] as Phase)}`),
      ...(c.off ? [`API group off  ${fmt(c.off)}`] : []),
      `pgbench 2-row tx ${fmt(c.pg, ' tx/s')}`,
      `pgbench ${c.groupRows}-row group statements ${fmt(c.group, ' rows/s')}`,
      `ratios to pgbench 2-row: ${[...groupApis.map((api, j) => `${api.label} ${((c.on[j] as Phase).rate / c.pg.rate).toFixed(2)}`), ...(c.off ? [`off ${(c.off.rate / c.pg.rate).toFixed(2)}`] : [])].join(', ')}; ${groupApis[0]?.label} / group-limit ${((c.on[0] as Phase).rate / c.group.rate).toFixed(2)}`,
    ];
    lines.push(`  round ${i + 1}: ${phases.join('\n           ')}`);
  }
  const ratio = (f: (c: Cell) => number) => median(rs.map(f)).toFixed(2);
  const rowsPerCommit = (j: number) => median(rs.map((c) => (c.on[j] as Phase).rowsPerCommit ?? 0)).toFixed(1);
  lines.push(
    `  median ratios to pgbench 2-row: ${[
      ...groupApis.map((api, j) => `${api.label} ${ratio((c) => (c.on[j] as Phase).rate / c.pg.rate)} (${rowsPerCommit(j)} rows/commit)`),
      ...(offApi ? [`off ${ratio((c) => (c.off as Phase).rate / c.pg.rate)}`] : []),
    ].join('; ')}; ${groupApis[0]?.label} / pgbench group ${ratio((c) => (c.on[0] as Phase).rate / c.group.rate)}`,
  );
}
lines.push(
  `durability check: ${accepted} responses 202 (+ up to ${maxConnections * apiPhases} uncounted in flight at phase ends), ${failed} other/errors; ${counts.evaluations} evaluation rows, ${counts.outbox} outbox rows`,
);
process.stdout.write(`${lines.join('\n')}\n`);
reportFigures(
  clientCounts.map((connections) => {
    const rs = cells.get(connections) as Cell[];
    return {
      figure: `ingest (group commit on), ${connections} clients, median of ${rounds}`,
      value: median(rs.map((c) => (c.on[0] as Phase).rate)),
      unit: 'evaluations/s',
      reference: 'pgbench 2-row tx, no NOTIFY',
      referenceValue: median(rs.map((c) => c.pg.rate)),
    };
  }),
);
const uncounted = counts.evaluations - accepted;
if (counts.outbox !== counts.evaluations || uncounted < 0 || uncounted > maxConnections * apiPhases || failed > 0) {
  process.stderr.write('durability check FAILED: rows and 202s differ\n');
  process.exitCode = 1;
}
