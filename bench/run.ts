// `npm run bench`: runs the ingest, relay, relay handoff, scorer, judge and end-to-end benchmarks one after the
// other on one stack, each as its own process (its progress and its full output go to this
// terminal), reads the figures each one reports, and prints ONE table: every figure, the
// reference measured in the same run (pgbench without NOTIFY for commits, kcat for the broker,
// the fake judge's own latency for the judge) and their ratio. A full run rewrites the table at
// the top of bench/RESULTS.md, with the machine (cores, memory, load average at start and end)
// and the date; `--quick` is a smoke check (a few minutes; its figures mean little) that writes nothing.
//   npm run bench [-- --quick] [-- --only ingest,relay]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { FIGURES_PREFIX, loadAverage, machine, requireEnv, type BenchFigure } from './lib.js';

interface Benchmark {
  name: string;
  script: string;
  full: string[];
  quick: string[];
  env?: Record<string, string>;
  quickEnv?: Record<string, string>;
}

const BENCHMARKS: Benchmark[] = [
  {
    name: 'ingest',
    script: 'bench/ingest.ts',
    full: ['--seconds', '8', '--rounds', '3', '--clients', '32,128'],
    quick: ['--seconds', '2', '--rounds', '1', '--clients', '16'],
  },
  {
    name: 'relay',
    script: 'bench/relay.ts',
    full: ['--events', '50000', '--rate', '200', '--seconds', '10'],
    quick: ['--events', '2000', '--rate', '100', '--seconds', '2', '--low-seconds', '2'],
    env: { BENCH_ROUNDS: '2' },
    quickEnv: { BENCH_ROUNDS: '1' },
  },
  { name: 'relay handoff', script: 'bench/relay-handoff.ts', full: ['--rounds', '50'], quick: ['--rounds', '5'] },
  { name: 'scorer', script: 'bench/scorer.ts', full: ['--evaluations', '0', '--backlog', '100000'], quick: ['--evaluations', '0', '--backlog', '2000'] },
  {
    name: 'judge',
    script: 'bench/judge.ts',
    full: ['--concurrency', '8,32,64', '--calls-per-worker', '25'],
    quick: ['--concurrency', '8', '--calls-per-worker', '5'],
  },
  { name: 'end to end', script: 'bench/e2e.ts', full: ['--seconds', '20', '--connections', '32'], quick: ['--seconds', '3', '--connections', '8'] },
];

const RESULTS = 'bench/RESULTS.md';
const TABLE_START = '<!-- npm run bench: table start -->';
const TABLE_END = '<!-- npm run bench: table end -->';

interface Row extends BenchFigure {
  bench: string;
}

/** Runs one benchmark, its output shown as it comes; resolves with the figures it reported. */
function runBenchmark(bench: Benchmark, quick: boolean): Promise<{ figures: BenchFigure[]; code: number | null; seconds: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', bench.script, ...(quick ? bench.quick : bench.full)], {
    env: { ...process.env, ...bench.env, ...(quick ? bench.quickEnv : {}) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const figures: BenchFigure[] = [];
  let pending = '';
  child.stdout.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      if (line.startsWith(FIGURES_PREFIX)) figures.push(...(JSON.parse(line.slice(FIGURES_PREFIX.length)) as BenchFigure[]));
      else process.stdout.write(`  ${line}\n`);
    }
  });
  return new Promise((resolve) => child.once('exit', (code) => resolve({ figures, code, seconds: (Date.now() - started) / 1000 })));
}

const number = (n: number) => (Math.abs(n) >= 100 ? n.toFixed(0) : n.toFixed(1));

/** The table as Markdown: figure, value, reference, reference value, ratio (figure / reference). */
export function formatTable(rows: Row[]): string {
  const lines = ['| benchmark | figure | value | reference (same run) | reference value | ratio |', '|---|---|---:|---|---:|---:|'];
  for (const r of rows) {
    const ratio = r.referenceValue > 0 ? (r.value / r.referenceValue).toFixed(2) : 'n/a';
    lines.push(
      `| ${r.bench} | ${r.figure} | ${number(r.value)} ${r.unit} | ${r.reference} | ${number(r.referenceValue)} ${r.unit} | ${ratio}${r.lowerIsBetter ? ' (lower is better)' : ''} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, only: { type: 'string' } } });
  const quick = values.quick;
  const only = values.only?.split(',').map((s) => s.trim());
  const chosen = BENCHMARKS.filter((b) => !only || only.includes(b.name) || only.includes(b.script));
  // One stack for all of them: started (or found) once, handed to every benchmark.
  requireEnv('DATABASE_URL');
  const startedAt = new Date();
  const loadAtStart = loadAverage();
  const rows: Row[] = [];
  const failures: string[] = [];
  const notes: string[] = [];
  for (const [i, bench] of chosen.entries()) {
    process.stdout.write(
      `bench: [${i + 1}/${chosen.length}] ${bench.name} (${bench.script} ${(quick ? bench.quick : bench.full).join(' ')}) — load average ${loadAverage()}\n`,
    );
    const result = await runBenchmark(bench, quick);
    process.stdout.write(`bench: ${bench.name} finished in ${result.seconds.toFixed(0)} s (exit ${result.code}), ${result.figures.length} figures\n`);
    // A benchmark that checks its own target (the judge's) exits 1 when it misses it: its figures still count.
    if (result.code !== 0) notes.push(`${bench.name} exited ${result.code} (a missed target of its own, or a failure: see its output)`);
    if (result.figures.length === 0) failures.push(`${bench.name} reported no figures`);
    rows.push(...result.figures.map((f) => ({ bench: bench.name, ...f })));
  }
  const loadAtEnd = loadAverage();
  const header = [
    `${quick ? 'Quick smoke run' : 'Run'} of \`npm run bench${quick ? ' -- --quick' : ''}\`, ${startedAt.toISOString()} to ${new Date().toISOString()}.`,
    `Machine: ${machine()}; load average at start ${loadAtStart}, at end ${loadAtEnd}.`,
    'Every reference was measured in the same run, on the same stack; ratio = value / reference.',
  ].join('\n');
  const table = formatTable(rows);
  process.stdout.write(`\n${header}\n\n${table}\n`);
  if (notes.length > 0) process.stdout.write(`\n${notes.join('\n')}\n`);
  if (failures.length > 0) process.stdout.write(`\nFAILED: ${failures.join('; ')}\n`);
  if (!quick && failures.length === 0) {
    const remarks = notes.length > 0 ? `\n\n${notes.join('\n')}` : '';
    const section = `${TABLE_START}\n## The table (\`npm run bench\`)\n\n${header}\n\n${table}${remarks}\n${TABLE_END}`;
    const old = fs.readFileSync(RESULTS, 'utf8');
    const start = old.indexOf(TABLE_START);
    const end = old.indexOf(TABLE_END);
    const next =
      start >= 0 && end > start ? `${old.slice(0, start)}${section}${old.slice(end + TABLE_END.length)}` : old.replace(/\n## /, `\n${section}\n\n## `);
    fs.writeFileSync(RESULTS, next);
    process.stdout.write(`\nwrote the table to ${RESULTS}\n`);
  }
  return failures.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`bench: ${error.stack ?? error.message}\n`);
    process.exit(2);
  },
);
