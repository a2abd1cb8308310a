// Helpers shared by the benchmarks: a fresh migrated database, spawning evalbox processes, the
// relay's settings, steady writers, pgbench and its ingest rows, percentiles, the machine
// description printed with every result, and the figures `npm run bench` tabulates.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import type { RelaySettings } from '../outbox-relay/relay.js';
import type { DbHandle } from '../src/db/index.js';
import type { OutboxNudger } from '../src/outbox-wakeup.js';
import { findPostgresBinDir } from '../src/stack/postgres.js';

/** The evaluation the ingest benchmarks POST (and pgbench writes as rows of the same sizes). */
export const INGEST_BODY = {
  prompt: 'Summarise the refund policy for orders shipped to the EU in two sentences. '.repeat(3),
  response:
    'Orders shipped to the EU can be returned within 30 days for a full refund. Refunds are issued to the original payment method within 14 days of receipt. '.repeat(
      2,
    ),
  context: ['Refund policy: EU customers may return any order within 30 days of delivery. Refunds go to the original payment method within 14 days.'],
  modelId: 'gpt-4o-mini',
  metadata: { team: 'support', release: '2026.11' },
};

/** DATABASE_URL / KAFKA_BROKERS from the environment, or from `evalbox stack up` (which starts them). */
export function requireEnv(name: 'DATABASE_URL' | 'KAFKA_BROKERS'): string {
  if (!process.env.DATABASE_URL || !process.env.KAFKA_BROKERS) {
    const up = spawnSync('node', ['bin/evalbox.js', 'stack', 'up', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (up.status !== 0) throw new Error('evalbox stack up failed');
    const endpoints = JSON.parse(up.stdout) as { databaseUrl: string; kafkaBrokers: string };
    process.env.DATABASE_URL = endpoints.databaseUrl;
    process.env.KAFKA_BROKERS = endpoints.kafkaBrokers;
  }
  return process.env[name] as string;
}

export function databaseUrlFor(base: string, database: string): string {
  const url = new URL(base);
  url.pathname = `/${database}`;
  return url.toString();
}

/** Drops and recreates `name`, then migrates it with the CLI. Returns its URL. */
export async function freshDatabase(name: string): Promise<string> {
  const base = requireEnv('DATABASE_URL');
  const admin = new pg.Client({ connectionString: databaseUrlFor(base, 'postgres') });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = databaseUrlFor(base, name);
  const migrate = spawnSync('node', ['bin/evalbox.js', 'migrate', '--database-url', url], { encoding: 'utf8' });
  if (migrate.status !== 0) throw new Error(`migrate failed: ${migrate.stderr}`);
  return url;
}

/**
 * Starts `evalbox <args>`. Its log lines (warn and above) go to this terminal unless the caller
 * reads stdout itself: a pipe nobody drains would block the process once it fills.
 */
export function evalbox(args: string[], env: NodeJS.ProcessEnv = {}, options: { nodeArgs?: string[]; readStdout?: boolean } = {}): ChildProcess {
  return spawn('node', [...(options.nodeArgs ?? []), 'bin/evalbox.js', ...args], {
    env: { ...process.env, EVALBOX_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', options.readStdout ? 'pipe' : 'inherit', 'inherit'],
  });
}

/** Rejects when `child` exits, so a benchmark waiting on its work fails instead of hanging. */
export function failOnExit(child: ChildProcess, what: string): Promise<never> {
  return new Promise((_, reject) => child.once('exit', (code, signal) => reject(new Error(`${what} exited early (code ${code}, signal ${signal})`))));
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/**
 * Each id's time from `startedAt` to `endedAt` (the same clock), sorted: the latency of events
 * tracked by id. Every id that started must have ended; the callers wait for that first.
 */
export function elapsedById(startedAt: Map<string, number>, endedAt: Map<string, number>): number[] {
  return [...startedAt]
    .map(([id, at]) => {
      const end = endedAt.get(id);
      if (end === undefined) throw new Error(`no end recorded for ${id}`);
      return end - at;
    })
    .sort((a, b) => a - b);
}

/** The median of unsorted samples (the upper middle one for an even count). */
export const median = (xs: number[]): number =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );

export function machine(): string {
  return `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, Node ${process.version}`;
}

export async function waitForHttp(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer`);
}

export const loadAverage = (): string =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

/** The relay's settings as the benchmarks run it (notify wake-up, batches of 2000), with `overrides`. */
export function relaySettings(overrides: Partial<RelaySettings> = {}): RelaySettings {
  return {
    batchSize: Number(process.env.BENCH_BATCH ?? 2000),
    wakeup: 'notify',
    pollMinMs: 5,
    pollMaxMs: 500,
    leaseTtlMs: 3000,
    heartbeatMs: 1000,
    retentionHours: 72,
    partitionsAhead: 2,
    maxShards: 64,
    horizonReportAfterMs: 5000,
    partitionMaintenanceMs: 600_000,
    ...overrides,
  };
}

/**
 * `writers` concurrent loops calling `write(w)` at `rate` calls per second in total, evenly
 * spaced, for `seconds` (the steady load of the latency benchmarks).
 */
export async function steadyWriters(writers: number, rate: number, seconds: number, write: (writer: number) => Promise<void>): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  const interval = (writers * 1000) / rate;
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      let next = Date.now() + (w * interval) / writers;
      await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
      while (Date.now() < deadline) {
        await write(w);
        next += interval;
        await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
      }
    }),
  );
}

/** Text for a pgbench script: pgbench reads ":name" as a variable, so text is passed base64-encoded (no colons). */
export const pgbenchText = (s: string): string => `convert_from(decode('${Buffer.from(s).toString('base64')}', 'base64'), 'UTF8')`;

/** The ingest's two rows (the evaluation and its outbox event, sizes of INGEST_BODY) for application `app`, as pgbench SQL. */
export function pgbenchIngestRows(app: string, body = INGEST_BODY): { evaluationValues: string; outboxValues: string } {
  const payload = JSON.stringify({
    schemaVersion: 1,
    evaluationId: '00000000-0000-7000-8000-000000000000',
    applicationId: 'bench',
    ...body,
    reference: null,
    dimensions: ['groundedness', 'answer_relevance', 'pii_leak', 'toxicity'],
    createdAt: '2026-11-30T00:00:00.000Z',
  });
  return {
    evaluationValues: `gen_random_uuid(), '${app}', ${pgbenchText(body.modelId)}, ${pgbenchText(body.prompt)}, ${pgbenchText(body.response)}, ${pgbenchText(JSON.stringify(body.context))}::jsonb, ${pgbenchText(JSON.stringify(body.metadata))}::jsonb, '{groundedness,answer_relevance,pii_leak,toxicity}'`,
    outboxValues: `gen_random_uuid(), outbox_shard_of('${app}'), 'llm-evaluation-events', '${app}', 'evaluation.created', '/evalbox/api', '{}', ${pgbenchText(payload)}::jsonb`,
  };
}

export interface PgbenchResult {
  /** Transactions per second (pgbench's figure). */
  tps: number;
  /** Per-transaction latencies in ms, sorted, when asked for. */
  latenciesMs: number[];
}

/** Runs pgbench's `file` with `clients` clients for `seconds` against `databaseUrl` (prepared statements, no vacuum). */
export function runPgbench(databaseUrl: string, file: string, clients: number, seconds: number, options: { latencies?: boolean } = {}): PgbenchResult {
  const u = new URL(databaseUrl);
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'evalbox-pgbench-'));
  try {
    const args = ['-n', '-M', 'prepared', '-c', String(clients), '-j', '2', '-T', String(seconds), '-f', file];
    if (options.latencies) args.push('-l', `--log-prefix=${path.join(logDir, 'tx')}`);
    args.push('-h', u.hostname, '-p', u.port, '-U', u.username, u.pathname.slice(1));
    const run = spawnSync(path.join(findPostgresBinDir() as string, 'pgbench'), args, { encoding: 'utf8', cwd: logDir });
    if (run.status !== 0) throw new Error(`pgbench failed: ${run.stderr}`);
    // Per-transaction log lines: client_id transaction_no time_us script_no epoch epoch_us.
    const latenciesMs = options.latencies
      ? fs
          .readdirSync(logDir)
          .flatMap((f) => fs.readFileSync(path.join(logDir, f), 'utf8').trim().split('\n'))
          .map((line) => Number(line.split(' ')[2]) / 1000)
          .sort((a, b) => a - b)
      : [];
    return { tps: Number(/tps = ([\d.]+)/.exec(run.stdout)?.[1]), latenciesMs };
  } finally {
    fs.rmSync(logDir, { recursive: true, force: true });
  }
}

/**
 * One line of `npm run bench`'s table: a measured figure and the reference measured in the same
 * run that it is compared with (higher is better for both unless `lowerIsBetter`).
 */
export interface BenchFigure {
  figure: string;
  value: number;
  unit: string;
  reference: string;
  referenceValue: number;
  lowerIsBetter?: boolean;
}

/** The line prefix `npm run bench` reads a benchmark's figures from. */
export const FIGURES_PREFIX = 'bench-figures: ';

/** Prints the benchmark's figures for `npm run bench` (one line of JSON after the human-readable output). */
export function reportFigures(figures: BenchFigure[]): void {
  process.stdout.write(`${FIGURES_PREFIX}${JSON.stringify(figures)}\n`);
}

/**
 * Waits until the relay has published every outbox row of `handle`'s database (one latency
 * recorded per event, except for the `uncounted` rows of a warm-up), then stops the nudger, the
 * relay and the pool. Returns the latencies, sorted.
 */
export async function settleLatencies(
  handle: DbHandle,
  latencies: number[],
  parts: { nudger: Pick<OutboxNudger, 'idle'>; relay: { stop(): Promise<void> } },
  uncounted = 0,
): Promise<number[]> {
  const expected = Number((await sql<{ n: string }>`SELECT count(*) AS n FROM outbox`.execute(handle.db)).rows[0]?.n) - uncounted;
  while (latencies.length < expected) await new Promise((r) => setTimeout(r, 50));
  await parts.nudger.idle();
  await parts.relay.stop();
  await handle.close();
  return [...latencies].sort((a, b) => a - b);
}
