// Stable cursor pagination: pages read while writers insert concurrently neither skip nor repeat
// a row — including a row whose transaction took its xid early and committed late.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { evaluationsPageQuery } from '../src/api/queries.js';
import { createApiFixture, listEvaluations, validEvaluation, type ApiFixture } from './api-helpers.js';
import { waitFor } from './helpers.js';

describe('GET /v1/evaluations pagination', () => {
  let f: ApiFixture;
  beforeAll(async () => {
    f = await createApiFixture();
  });
  afterAll(async () => f.database.drop());

  const page = (query: string, key?: string) => listEvaluations(f, query, key);

  it('neither skips nor repeats rows while inserts happen concurrently, even a late-committing one', async () => {
    // A transaction that takes its xid now and commits only after the reader has paged past it.
    const late = await f.database.pool.connect();
    await late.query('BEGIN');
    await late.query(
      `INSERT INTO evaluations (id, application_id, prompt, response, dimensions) VALUES ('00000000-0000-7000-8000-000000000001', 'app-a', 'p', 'r', '{toxicity}')`,
    );

    const committed = new Set<string>(['00000000-0000-7000-8000-000000000001']);
    let writing = true;
    const writers = Array.from({ length: 4 }, async () => {
      while (writing) {
        const res = await f.post('/v1/evaluations', validEvaluation({ dimensions: ['toxicity'] }));
        committed.add(((await res.json()) as { evaluationId: string }).evaluationId);
      }
    });

    const seen: string[] = [];
    let cursor: string | null = null;
    for (let round = 0; round < 40; round++) {
      const p = await page(`limit=7${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...p.items.map((i) => i.evaluationId));
      cursor = p.nextCursor ?? cursor;
      if (round === 20) await late.query('COMMIT');
    }
    writing = false;
    await Promise.all(writers);
    late.release();
    // Catch up: everything committed must arrive after the last cursor, nothing twice. The
    // horizon is cluster-wide, so a transaction of another database on this server can delay
    // (never drop) the last rows: keep paging until they are all there.
    await waitFor(
      async () => {
        for (;;) {
          const p = await page(`limit=50${cursor ? `&cursor=${cursor}` : ''}`);
          if (p.items.length === 0) break;
          seen.push(...p.items.map((i) => i.evaluationId));
          cursor = p.nextCursor;
        }
        return seen.length >= committed.size;
      },
      { what: 'every committed row to be listed', timeoutMs: 15_000 },
    );
    expect(new Set(seen).size).toBe(seen.length);
    expect(new Set(seen)).toEqual(committed);
    expect(committed.size).toBeGreaterThan(40);
  });

  it('filters by status and since, and rejects bad parameters with 400', async () => {
    const { evaluationId } = (await (await f.post('/v1/evaluations', validEvaluation())).json()) as { evaluationId: string };
    await sql`UPDATE evaluations SET status = 'SCORED' WHERE id = ${evaluationId}`.execute(f.database.db);
    // Listed once below the (cluster-wide) snapshot horizon, normally at once.
    const scored = await waitFor(async () => {
      const p = await page('status=SCORED&limit=500');
      return p.items.length > 0 && p;
    });
    expect(scored.items.map((i) => i.evaluationId)).toEqual([evaluationId]);
    expect((await page(`status=PENDING&limit=500`)).items.map((i) => i.evaluationId)).not.toContain(evaluationId);
    const future = await page(`since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`);
    expect(future.items).toEqual([]);
    for (const bad of ['status=DONE', 'since=yesterday', 'limit=0', 'limit=501', 'cursor=garbage']) {
      const res = await f.get(`/v1/evaluations?${bad}`);
      expect(res.status).toBe(400);
    }
  });

  it('the list cursor is opaque: it does not expose the cluster-wide transaction id, and a tampered or foreign cursor is refused', async () => {
    const { evaluationId } = (await (await f.post('/v1/evaluations', validEvaluation())).json()) as { evaluationId: string };
    const { rows } = await f.database.pool.query<{ xid: string }>('SELECT xid::text AS xid FROM evaluations WHERE id = $1', [evaluationId]);
    const xid = rows[0]?.xid ?? '';
    const p = await waitFor(async () => {
      const listed = await page('limit=500');
      return listed.items.some((i) => i.evaluationId === evaluationId) && listed;
    });
    const cursor = p.nextCursor ?? '';
    const decoded = Buffer.from(cursor, 'base64url').toString('latin1');
    expect(decoded).not.toContain(xid);
    expect(decoded).not.toContain(p.items[p.items.length - 1]?.evaluationId ?? '');
    // Still a working cursor.
    expect((await f.get(`/v1/evaluations?cursor=${cursor}`)).status).toBe(200);
    // Flipping one character, or using another application's cursor, is a 400.
    const flipped = `${cursor.slice(0, 10)}${cursor[10] === 'A' ? 'B' : 'A'}${cursor.slice(11)}`;
    expect((await f.get(`/v1/evaluations?cursor=${flipped}`)).status).toBe(400);
    expect((await f.get(`/v1/evaluations?cursor=${cursor}`, f.keyB)).status).toBe(400);
  });

  it('since is bounded: a since near the end of a long history reads the rows created since then (an index), not the history before it', async () => {
    // Ten days of one application's history, written as the API writes it: one transaction (one
    // xid) per few rows, in time order, among other applications' rows.
    await f.database.pool.query(`
      DO $$
      BEGIN
        FOR t IN 1..1000 LOOP
          INSERT INTO evaluations (id, application_id, prompt, response, dimensions, created_at)
          SELECT gen_random_uuid(), 'hist-' || (i % 4), 'p', 'r', '{toxicity}', now() - make_interval(secs => (1000 - t) * 864 + i)
          FROM generate_series(1, 20) AS i;
          COMMIT;
        END LOOP;
      END $$`);
    await f.database.pool.query('ANALYZE evaluations');
    // The list shows only rows below the snapshot horizon, which any open transaction on the
    // shared cluster holds back: wait until these rows are there.
    await waitFor(
      async () =>
        (
          await f.database.pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM evaluations WHERE application_id LIKE 'hist-%' AND xid >= pg_snapshot_xmin(pg_current_snapshot())`,
          )
        ).rows[0]?.n === 0,
      { timeoutMs: 60_000, what: 'the rows to fall below the snapshot horizon' },
    );
    const since = new Date(Date.now() - 3_600_000);
    const compiled = evaluationsPageQuery(f.database.db, { applicationId: 'hist-1', since, limit: 50 }).compile();
    const { rows } = await f.database.pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${compiled.sql}`, [...compiled.parameters]);
    const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
    process.stdout.write(`since, first page:\n${plan}\n`);
    expect(plan).toMatch(/evaluations_application_created_at_idx/);
    // The application's history is 5,000 rows on hundreds of pages; its last hour a handful.
    // The top node's buffers (the planner's own come last, under "Planning").
    const top = /Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?/.exec(plan);
    expect(Number(top?.[1] ?? 0) + Number(top?.[2] ?? 0)).toBeLessThan(100);
    // And the answer is the unbounded walk's: every row created since then, in (xid, id) order.
    const bounded = await evaluationsPageQuery(f.database.db, { applicationId: 'hist-1', since, limit: 500 }).execute();
    const all = await f.database.pool.query<{ id: string }>(
      `SELECT id FROM evaluations WHERE application_id = 'hist-1' AND created_at >= $1 ORDER BY xid, id`,
      [since],
    );
    expect(all.rows.length).toBeGreaterThan(0);
    expect(bounded.map((r) => r.id)).toEqual(all.rows.map((r) => r.id));
  });
});
