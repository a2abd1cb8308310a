// The results stream: GET /v1/evaluations:stream sends an application's evaluation.scored results
// as server-sent events as they are decided. It reads them from the database in the scoredSince
// order, (scored_xid, id) below the snapshot horizon, so nothing committed late is skipped; each
// event's id is the sealed cursor of its position, so a client that reconnects with
// Last-Event-ID resumes right after the last event it received, with no loss and no duplicate.
// Open streams are bounded per application, idle streams send heartbeats, and every stream ends
// when the process stops (the client reconnects elsewhere with its Last-Event-ID).
import { setTimeout as sleep } from 'node:timers/promises';
import type { Context } from 'hono';
import { streamSSE, type SSEStreamingApi } from 'hono/streaming';
import { sql } from 'kysely';
import type { Db } from '../db/index.js';
import { EVENT_TYPES } from '../events.js';
import type { Logger } from '../logging.js';
import { EVENT_SCHEMA_VERSION, isTerminalScore, toScoreResult, type EvaluationScoredData } from '../schemas/events.js';
import type { CursorCodec, Position } from './cursor.js';
import type { Limits } from './limits.js';
import { listScoredPage } from './queries.js';

export interface ResultStreamSettings {
  /** How often an open stream looks for new results. */
  pollMs: number;
  /** A comment line after this long without an event, so proxies and clients see the stream alive. */
  heartbeatMs: number;
  /** Open streams per application and API process; one more is a 429. */
  maxPerApplication: number;
  /** Results read per query. */
  batch: number;
}

export const DEFAULT_RESULT_STREAM_SETTINGS: ResultStreamSettings = { pollMs: 500, heartbeatMs: 15_000, maxPerApplication: 4, batch: 100 };

export interface ResultStreams {
  settings: ResultStreamSettings;
  /** A release function, or undefined when the application has all its streams open. */
  open(applicationId: string): (() => void) | undefined;
  /** Streams open now, all applications together. */
  count(): number;
}

export function createResultStreams(settings: ResultStreamSettings): ResultStreams {
  const open = new Map<string, number>();
  let total = 0;
  return {
    settings,
    open(applicationId) {
      const n = open.get(applicationId) ?? 0;
      if (n >= settings.maxPerApplication) return undefined;
      open.set(applicationId, n + 1);
      total++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        total--;
        const left = (open.get(applicationId) ?? 1) - 1;
        if (left === 0) open.delete(applicationId);
        else open.set(applicationId, left);
      };
    },
    count: () => total,
  };
}

/**
 * Where a new stream without Last-Event-ID starts: after the application's latest result already
 * committed, so it receives the results decided from now on. A result whose transaction is still
 * open has a scored_xid at or above the horizon, hence after this position: it is not missed.
 * Index: evaluations_application_scored_xid_idx, read backwards.
 */
export async function latestResultPosition(db: Db, applicationId: string): Promise<Position | undefined> {
  const { rows } = await sql<{ xid: string; id: string }>`
    SELECT scored_xid::text AS xid, id FROM evaluations
    WHERE application_id = ${applicationId} AND scored_xid IS NOT NULL AND scored_xid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY scored_xid DESC, id DESC LIMIT 1`.execute(db);
  const row = rows[0];
  return row ? { xid: row.xid, id: row.id, order: 'scored' } : undefined;
}

/** The next results after `after`, as evaluation.scored data with the position of each. */
async function readResults(db: Db, applicationId: string, after: Position | undefined, batch: number) {
  const page = await listScoredPage(db, { applicationId, after, limit: batch });
  const rows = page.items.filter((e) => e.status !== 'PENDING');
  const scores =
    rows.length === 0
      ? []
      : await db
          .selectFrom('scores')
          .selectAll()
          .where(
            'evaluation_id',
            'in',
            rows.map((r) => r.id),
          )
          .where('source', 'in', ['LLM_JUDGE', 'HEURISTIC'])
          .orderBy('dimension')
          .execute();
  const results = rows.map((e) => {
    const data: EvaluationScoredData = {
      schemaVersion: EVENT_SCHEMA_VERSION,
      evaluationId: e.id,
      applicationId,
      status: e.status as EvaluationScoredData['status'],
      scores: scores
        .filter((s) => s.evaluation_id === e.id && e.dimensions.includes(s.dimension))
        .map(toScoreResult)
        .filter(isTerminalScore),
      scoredAt: (e.scored_at ?? new Date(0)).toISOString(),
    };
    return { data, position: e.position };
  });
  return { results, next: page.next, caughtUp: !page.hasMore };
}

export interface StreamDeps {
  db: Db;
  limits: Limits;
  cursors: CursorCodec;
  streams: ResultStreams;
  /** Aborted when the process stops: every stream ends. */
  stopping: AbortSignal;
  log: Logger;
}

/** Streams the application's results from `start` on; `release` frees its slot when the stream ends. */
export function streamResults(c: Context, deps: StreamDeps, applicationId: string, start: Position | undefined, release: () => void): Response {
  const { settings } = deps.streams;
  return streamSSE(c, async (stream: SSEStreamingApi) => {
    const ended = new AbortController();
    stream.onAbort(() => ended.abort());
    const signal = AbortSignal.any([ended.signal, deps.stopping]);
    let position = start;
    let lastWrite = Date.now();
    try {
      // Reconnect after a second when the stream ends (the process stopped, a network cut).
      await stream.write('retry: 1000\n\n');
      while (!signal.aborted) {
        const { results, next, caughtUp } = await deps.limits.withConnection(applicationId, () =>
          readResults(deps.db, applicationId, position, settings.batch),
        );
        for (const result of results) {
          await stream.writeSSE({
            id: deps.cursors.encode(result.position, applicationId),
            event: EVENT_TYPES.evaluationScored,
            data: JSON.stringify(result.data),
          });
          lastWrite = Date.now();
        }
        position = next ?? position;
        if (!caughtUp) continue;
        if (Date.now() - lastWrite >= settings.heartbeatMs) {
          await stream.write(': heartbeat\n\n');
          lastWrite = Date.now();
        }
        await sleep(settings.pollMs, undefined, { signal }).catch(() => undefined);
      }
    } catch (error) {
      // The database went away or the client did: end the stream; the client resumes with its
      // Last-Event-ID. The message is logged, never sent (it can name hosts and users).
      if (!signal.aborted)
        deps.log.warn({ err: { type: (error as Error).name, message: (error as Error).message }, applicationId }, 'results stream ended by an error');
    } finally {
      release();
    }
  });
}
