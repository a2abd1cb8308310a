// Runs the inspection queries in db/inspect/*.sql (one question per file), for the
// `evalbox outbox` CLI and for the relay's own metrics.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CompiledQuery } from 'kysely';
import type { Db } from './db/index.js';

const inspectDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../db/inspect');
const cache = new Map<string, string>();

export type InspectionName = 'backlog' | 'oldest' | 'throughput' | 'horizon_blocker' | 'key_history' | 'parked' | 'relay_shards' | 'stage_counts';

export function inspectionSql(name: InspectionName): string {
  let text = cache.get(name);
  if (!text) {
    text = fs.readFileSync(path.join(inspectDir, `${name}.sql`), 'utf8');
    cache.set(name, text);
  }
  return text;
}

/** Runs one inspection file with positional parameters ($1, $2, …). */
export async function runInspection<Row>(db: Db, name: InspectionName, parameters: unknown[] = []): Promise<Row[]> {
  const { rows } = await db.executeQuery<Row>(CompiledQuery.raw(inspectionSql(name), parameters));
  return rows;
}

export interface BacklogRow {
  topic: string;
  pending: string;
  oldest_age_seconds: number;
  oldest_created_at: Date;
}

export interface HorizonBlocker {
  pid: number;
  ageSeconds: number;
  query: string;
  state: string;
}

/** The backend whose open transaction holds the snapshot horizon back, if any. */
export async function findHorizonBlocker(db: Db): Promise<HorizonBlocker | undefined> {
  const [row] = await runInspection<{ pid: number; age_seconds: number; query: string; state: string }>(db, 'horizon_blocker');
  return row ? { pid: row.pid, ageSeconds: row.age_seconds, query: row.query, state: row.state } : undefined;
}
