// Benchmark: the judge client against the fake judge (its own process) answering in 200 ms.
// For each configured concurrency C, C workers score distinct contents back to back:
//   throughput should be C / 0.2 s within 10 %, and per-call overhead (wall time minus the
//   server's 200 ms, so it includes loopback HTTP and the fake server's own work) small;
// once without the cache, once through the Postgres cache (a read, a claim and a store per miss);
// then two replicas (two pools, two judge instances) score the same contents at the same time:
//   exactly one paid call per content, zero duplicate requests at the provider.
//   eval "$(npx evalbox stack up)"; node --import tsx bench/judge.ts [--concurrency 8,32,64] [--calls-per-worker 25]
import { parseArgs } from 'node:util';
import { createDb } from '../src/db/index.js';
import { loadJudgeConfig } from '../consumers/judge/config.js';
import { createJudge, type Judge } from '../consumers/judge/judge.js';
import { evalbox, freshDatabase, loadAverage, machine, percentile, reportFigures, type BenchFigure } from './lib.js';

const { values } = parseArgs({
  options: {
    concurrency: { type: 'string', default: '8,32,64' },
    'calls-per-worker': { type: 'string', default: '25' },
    'latency-ms': { type: 'string', default: '200' },
  },
});
const levels = values.concurrency.split(',').map(Number);
const perWorker = Number(values['calls-per-worker']);
const serverLatencyMs = Number(values['latency-ms']);

const fakeProcess = evalbox(['fake-judge', '--port', '0', '--latency-ms', String(serverLatencyMs)], {}, { readStdout: true });
const fakeUrl = await new Promise<string>((resolve, reject) => {
  let out = '';
  fakeProcess.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    const match = /listening on (http:\/\/\S+)/.exec(out);
    if (match?.[1]) resolve(match[1]);
  });
  fakeProcess.once('exit', (code) => reject(new Error(`fake judge exited with ${code}`)));
});
const fakeStats = async () =>
  (await (await fetch(`${fakeUrl}/_stats`)).json()) as { total: number; distinctContent: number; duplicates: number; maxInFlight: number };
const resetFake = () => fetch(`${fakeUrl}/_stats/reset`, { method: 'POST' });

const databaseUrl = await freshDatabase('evalbox_bench_judge');

function configFor(concurrency: number) {
  const config = loadJudgeConfig({ EVALBOX_JUDGE_CONFIG: '/bench.json' }, () =>
    JSON.stringify({
      endpoints: [{ name: 'fake', baseUrl: fakeUrl, model: 'fake-judge-1', maxConcurrency: concurrency, timeoutMs: 10_000 }],
      prices: { 'fake-judge-1': { inputPerMTok: 0.15, outputPerMTok: 0.6 } },
    }),
  );
  if (!config) throw new Error('no config');
  return config;
}

const contents = (run: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({
    prompt: `Benchmark ${run}: what is the refund window for order ${i}?`,
    response: `Order ${i} can be returned within 30 days of delivery for a full refund to the original payment method.`,
  }));

interface RunResult {
  seconds: number;
  calls: number;
  paid: number;
  hits: number;
  overheads: number[];
}

/** `workers` loops, each scoring its share of `items` in order; returns timings. */
async function drive(judges: Judge[], workersPerJudge: number, items: ReturnType<typeof contents>): Promise<RunResult> {
  const overheads: number[] = [];
  let paid = 0;
  let hits = 0;
  const started = performance.now();
  await Promise.all(
    judges.flatMap((judge) =>
      Array.from({ length: workersPerJudge }, async (_, w) => {
        for (let i = w; i < items.length; i += workersPerJudge) {
          const t0 = performance.now();
          const outcome = await judge.score('judge_relevance', items[i] as (typeof items)[number]);
          const took = performance.now() - t0;
          if (outcome.status !== 'COMPLETED') throw new Error(`unexpected ${outcome.status} ${outcome.errorCode}`);
          if (outcome.cacheHit) hits++;
          else {
            paid++;
            overheads.push(took - serverLatencyMs);
          }
        }
      }),
    ),
  );
  return { seconds: (performance.now() - started) / 1000, calls: paid + hits, paid, hits, overheads: overheads.sort((a, b) => a - b) };
}

const lines: string[] = [];
const print = (line: string) => {
  lines.push(line);
  process.stdout.write(`${line}\n`);
};
print(`judge benchmark — ${new Date().toISOString()}`);
print(`machine: ${machine()}; load average at start ${loadAverage()}`);
print(
  `fake judge: separate process, ${serverLatencyMs} ms per request; ${perWorker} calls per worker; overhead = wall time per paid call - ${serverLatencyMs} ms`,
);

let failed = false;
const figures: BenchFigure[] = [];
for (const c of levels) {
  process.stderr.write(`judge bench: C=${c}\n`);
  const handle = createDb(databaseUrl, { max: Math.min(c + 2, 40), applicationName: 'bench-judge-a' });
  const handleB = createDb(databaseUrl, { max: Math.min(c + 2, 40), applicationName: 'bench-judge-b' });
  const n = c * perWorker;
  const expected = c / (serverLatencyMs / 1000);
  for (const mode of ['no cache', 'pg cache'] as const) {
    const judge = createJudge({ config: configFor(c), ...(mode === 'pg cache' ? { db: handle.db } : {}) });
    // Warm the connection pools (HTTP and database) before measuring.
    await drive([judge], c, contents(`warm-${mode}-${c}`, c));
    await resetFake();
    const r = await drive([judge], c, contents(`${mode}-${c}`, n));
    const stats = await fakeStats();
    const throughput = r.paid / r.seconds;
    const ratio = throughput / expected;
    const ok = Math.abs(ratio - 1) <= 0.1 && stats.duplicates === 0 && stats.total === n;
    failed ||= !ok;
    if (mode === 'pg cache') {
      figures.push(
        {
          figure: `judge calls/s through the cache, C=${c}`,
          value: throughput,
          unit: 'calls/s',
          reference: `C / the fake judge's ${serverLatencyMs} ms`,
          referenceValue: expected,
        },
        {
          figure: `judge call p50 through the cache, C=${c}`,
          value: serverLatencyMs + percentile(r.overheads, 50),
          unit: 'ms',
          reference: "the fake judge's own latency",
          referenceValue: serverLatencyMs,
          lowerIsBetter: true,
        },
      );
    }
    print(
      `C=${String(c).padStart(3)} ${mode.padEnd(8)}: ${r.paid} calls in ${r.seconds.toFixed(2)} s = ${throughput.toFixed(1)} calls/s (C/0.2 s = ${expected.toFixed(0)}, ratio ${ratio.toFixed(3)}); ` +
        `provider saw ${stats.total} requests, ${stats.duplicates} duplicates, max in flight ${stats.maxInFlight}; ` +
        `overhead p50 ${percentile(r.overheads, 50).toFixed(1)} ms, p99 ${percentile(r.overheads, 99).toFixed(1)} ms ${ok ? 'OK' : 'MISSED'}`,
    );
    await judge.close();
  }
  // Two replicas with their own pools score the same contents at the same moment.
  const a = createJudge({ config: configFor(c), db: handle.db, instanceId: 'bench-a' });
  const b = createJudge({ config: configFor(c), db: handleB.db, instanceId: 'bench-b' });
  await resetFake();
  const items = contents(`replicas-${c}`, n);
  const r = await drive([a, b], c, items);
  const stats = await fakeStats();
  const ok = r.paid === n && stats.total === n && stats.duplicates === 0;
  failed ||= !ok;
  print(
    `C=${String(c).padStart(3)} 2 replicas: ${r.calls} scores of ${n} contents in ${r.seconds.toFixed(2)} s: ${r.paid} paid, ${r.hits} cache hits; ` +
      `provider saw ${stats.total} requests, ${stats.duplicates} duplicates ${ok ? 'OK' : 'MISSED'}`,
  );
  await a.close();
  await b.close();
  await handle.close();
  await handleB.close();
}

reportFigures(figures);
fakeProcess.kill('SIGTERM');
process.exitCode = failed ? 1 : 0;
