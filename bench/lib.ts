// Helpers shared by the benchmarks: a fresh migrated database, spawning evalbox processes,
// percentiles and the machine description printed with every result.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import pg from 'pg';

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
