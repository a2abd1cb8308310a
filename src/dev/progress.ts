// What `evalbox dev` shows while it runs: the evaluations of this run by status (from the
// database), what the processes report on /metrics (published, DLT, consumer lag, leadership),
// and the outbox backlog. Every figure is read from where an operator would read it.
import { sql } from 'kysely';
import type { Db } from '../db/index.js';
import { runInspection, type BacklogRow } from '../inspect.js';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text exposition format (the subset prom-client writes). */
export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1] as string] = pair[2] as string;
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) });
  }
  return samples;
}

export async function scrape(adminPort: number, signal?: AbortSignal): Promise<Sample[]> {
  const response = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { signal: signal ?? AbortSignal.timeout(2_000) });
  if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
  return parseMetrics(await response.text());
}

export const sumOf = (samples: Sample[], name: string, filter: (labels: Record<string, string>) => boolean = () => true): number =>
  samples.filter((s) => s.name === name && filter(s.labels)).reduce((total, s) => total + s.value, 0);

export const TERMINAL = ['SCORED', 'PARTIALLY_SCORED', 'SCORING_FAILED'] as const;

export interface StatusCounts {
  PENDING: number;
  SCORED: number;
  PARTIALLY_SCORED: number;
  SCORING_FAILED: number;
  /** Accepted ids the database does not have: lost. */
  missing: number;
}

export async function statusCounts(db: Db, ids: string[]): Promise<StatusCounts> {
  const counts: StatusCounts = { PENDING: 0, SCORED: 0, PARTIALLY_SCORED: 0, SCORING_FAILED: 0, missing: 0 };
  if (ids.length === 0) return counts;
  const { rows } = await sql<{ status: keyof StatusCounts; n: string }>`
    SELECT status, count(*) AS n FROM evaluations WHERE id = ANY(${ids}::uuid[]) GROUP BY status`.execute(db);
  let found = 0;
  for (const row of rows) {
    counts[row.status] = Number(row.n);
    found += Number(row.n);
  }
  counts.missing = ids.length - found;
  return counts;
}

/** Events not yet published, all topics. */
export async function outboxBacklog(db: Db): Promise<number> {
  const rows = await runInspection<BacklogRow>(db, 'backlog');
  return rows.reduce((total, r) => total + Number(r.pending), 0);
}

export interface DimensionMean {
  application: string;
  dimension: string;
  mean: number | null;
  completed: number;
  skipped: number;
  errors: number;
}

export async function dimensionMeans(db: Db, ids: string[], groupBy: 'application' | 'answerKind'): Promise<DimensionMean[]> {
  if (ids.length === 0) return [];
  const group = groupBy === 'application' ? sql`e.application_id` : sql`coalesce(e.metadata->>'answerKind', '-')`;
  const { rows } = await sql<{ application: string; dimension: string; mean: number | null; completed: string; skipped: string; errors: string }>`
    SELECT ${group} AS application, s.dimension,
           avg(s.value) FILTER (WHERE s.status = 'COMPLETED')::double precision AS mean,
           count(*) FILTER (WHERE s.status = 'COMPLETED') AS completed,
           count(*) FILTER (WHERE s.status = 'SKIPPED') AS skipped,
           count(*) FILTER (WHERE s.status = 'ERROR') AS errors
    FROM evaluations e JOIN scores s ON s.evaluation_id = e.id
    WHERE e.id = ANY(${ids}::uuid[])
    GROUP BY 1, 2 ORDER BY 1, 2`.execute(db);
  return rows.map((r) => ({ ...r, completed: Number(r.completed), skipped: Number(r.skipped), errors: Number(r.errors) }));
}

export interface LatencyRow {
  application: string;
  scored: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Accept (the evaluation row's commit) to scored (the terminal status), per application and overall. */
export async function acceptToScoredLatency(db: Db, ids: string[]): Promise<LatencyRow[]> {
  if (ids.length === 0) return [];
  const { rows } = await sql<{ application: string | null; scored: string; p50: number; p99: number; max: number }>`
    SELECT application_id AS application, count(*) AS scored,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM scored_at - created_at)) * 1000 AS p50,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM scored_at - created_at)) * 1000 AS p99,
           max(extract(epoch FROM scored_at - created_at)) * 1000 AS max
    FROM evaluations
    WHERE id = ANY(${ids}::uuid[]) AND scored_at IS NOT NULL
    GROUP BY ROLLUP (application_id) ORDER BY application_id NULLS LAST`.execute(db);
  return rows.map((r) => ({
    application: r.application ?? 'all',
    scored: Number(r.scored),
    p50Ms: Number(r.p50),
    p99Ms: Number(r.p99),
    maxMs: Number(r.max),
  }));
}
