// Polling for results: GET /v1/evaluations?scoredSince=… then the cursor alone returns each
// evaluation whose result was decided after the client's last look, once, in the order results
// were committed — including a result whose transaction committed late — and the first poll's
// window is bounded and served by an index (EXPLAIN below).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { scoredPageSql } from '../src/api/queries.js';
import { createApiFixture, listEvaluations, validEvaluation, type ApiFixture } from './api-helpers.js';
import { waitFor } from './helpers.js';

describe('polling for results (scoredSince)', () => {
  let f: ApiFixture;
  beforeAll(async () => {
    f = await createApiFixture();
  });
  afterAll(async () => f.database.drop());

  const page = (query: string, key?: string) => listEvaluations(f, query, key);
  const create = async (key?: string) =>
    ((await (await f.post('/v1/evaluations', validEvaluation({ dimensions: ['toxicity'] }), key)).json()) as { evaluationId: string }).evaluationId;
  // What the scorer's final write does to the evaluation row.
  const score = (id: string) => sql`UPDATE evaluations SET status = 'SCORED', scored_at = now() WHERE id = ${id}`.execute(f.database.db);
  /** Reads every page from the cursor on until caught up; returns the ids and the last cursor. */
  const drain = async (start: string): Promise<{ ids: string[]; cursor: string }> => {
    const ids: string[] = [];
    let query = start;
    let cursor = '';
    for (;;) {
      const p = await page(query);
      if (p.items.length === 0) return { ids, cursor: cursor || p.nextCursor || '' };
      ids.push(...p.items.map((i) => i.evaluationId));
      cursor = p.nextCursor ?? cursor;
      query = `limit=3&cursor=${cursor}`;
    }
  };

  it('polling: every evaluation scored after the last look arrives once, in scoring order, even one whose scoring transaction committed late; unscored and other tenants’ never', async () => {
    const since = new Date(Date.now() - 1000).toISOString();
    const ids = await Promise.all(Array.from({ length: 8 }, () => create()));
    const otherTenant = await create(f.keyB);
    await score(otherTenant);
    // Nothing scored yet: the first poll is empty but hands out a cursor only once rows exist.
    expect((await page(`scoredSince=${encodeURIComponent(since)}`)).items).toEqual([]);

    for (const id of ids.slice(0, 3)) await score(id);
    const first = await waitFor(async () => {
      const p = await page(`scoredSince=${encodeURIComponent(since)}&limit=2`);
      return p.items.length === 2 && p;
    });
    expect(first.items.map((i) => i.evaluationId)).toEqual(ids.slice(0, 2));
    expect(first.hasMore).toBe(true);
    const rest = await waitFor(async () => {
      const d = await drain(`limit=2&cursor=${first.nextCursor}`);
      return d.ids.length > 0 && d;
    });
    const seen = [...first.items.map((i) => i.evaluationId), ...rest.ids];
    let cursor = rest.cursor;
    expect(seen).toEqual(ids.slice(0, 3));

    // A scorer's transaction takes its xid, then a later one commits first: the late result must
    // not be skipped by a client that polled in between.
    const late = await f.database.pool.connect();
    try {
      await late.query('BEGIN');
      await late.query(`UPDATE evaluations SET status = 'SCORED', scored_at = now() WHERE id = $1`, [ids[3]]);
      await score(ids[4] as string);
      await score(ids[5] as string);
      // The horizon holds back everything from the late transaction on, so nothing is listed yet.
      const during = await drain(`cursor=${cursor}`);
      expect(during.ids).toEqual([]);
      await late.query('COMMIT');
    } finally {
      late.release();
    }
    const after = await waitFor(async () => {
      const d = await drain(`cursor=${cursor}`);
      return d.ids.length >= 3 && d;
    });
    expect(after.ids).toEqual([ids[3], ids[4], ids[5]]);
    cursor = after.cursor;

    // Scored again (a redrive re-decides it): it moves to its new place and is seen again.
    await sql`UPDATE evaluations SET status = 'PARTIALLY_SCORED', scored_at = now() WHERE id = ${ids[0]}`.execute(f.database.db);
    const again = await waitFor(async () => {
      const d = await drain(`cursor=${cursor}`);
      return d.ids.length > 0 && d;
    });
    expect(again.ids).toEqual([ids[0]]);
    expect(seen).not.toContain(otherTenant);
    expect(after.ids).not.toContain(ids[6]);
    // The cursor belongs to application A: B cannot use it.
    expect((await f.get(`/v1/evaluations?cursor=${again.cursor}`, f.keyB)).status).toBe(400);
  });

  it('scoredSince is bounded: more than 24 hours back, not RFC 3339, or with a cursor of the created order is a 400', async () => {
    const old = new Date(Date.now() - 25 * 3_600_000).toISOString();
    for (const bad of [`scoredSince=${encodeURIComponent(old)}`, 'scoredSince=yesterday', 'scoredSince=2024']) {
      const res = await f.get(`/v1/evaluations?${bad}`);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { errors: { pointer: string }[] }).errors[0]?.pointer).toBe('query:scoredSince');
    }
    await create();
    const created = await waitFor(async () => {
      const p = await page('limit=1');
      return p.nextCursor !== null && p;
    });
    const res = await f.get(`/v1/evaluations?scoredSince=${encodeURIComponent(new Date().toISOString())}&cursor=${created.nextCursor ?? ''}`);
    expect(res.status).toBe(400);
  });

  it('the bound is an index: EXPLAIN shows the first poll served by evaluations_application_scored_at_idx and a cursor poll by evaluations_application_scored_xid_idx', async () => {
    // Ten days of results for 20 applications, 100,000 rows: one application's history is long,
    // its last hour short.
    await sql`
      INSERT INTO evaluations (id, application_id, prompt, response, dimensions, status, created_at, scored_at, scored_xid)
      SELECT gen_random_uuid(), 'bulk-' || (i % 20), 'p', 'r', '{toxicity}', 'SCORED',
             now() - make_interval(secs => i * 8.64), now() - make_interval(secs => i * 8.64), pg_current_xact_id()
      FROM generate_series(1, 100000) AS i`.execute(f.database.db);
    await sql`ANALYZE evaluations`.execute(f.database.db);
    const explain = async (query: Parameters<typeof scoredPageSql>[0]) => {
      const compiled = scoredPageSql(query).compile(f.database.db);
      const { rows } = await f.database.pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${compiled.sql}`, [...compiled.parameters]);
      return rows.map((r) => r['QUERY PLAN']).join('\n');
    };
    const firstPoll = await explain({ applicationId: 'bulk-7', scoredSince: new Date(Date.now() - 3_600_000), limit: 50 });
    expect(firstPoll).toMatch(/Index (Only )?Scan using evaluations_application_scored_at_idx|Bitmap Index Scan on evaluations_application_scored_at_idx/);
    expect(firstPoll).not.toMatch(/Seq Scan/);
    const { rows } = await sql<{ x: string; id: string }>`
      SELECT scored_xid::text AS x, id FROM evaluations WHERE application_id = 'bulk-7' ORDER BY scored_at LIMIT 1`.execute(f.database.db);
    const cursorPoll = await explain({ applicationId: 'bulk-7', after: { xid: rows[0]?.x ?? '0', id: rows[0]?.id ?? '' }, limit: 50 });
    expect(cursorPoll).toMatch(/Index Scan using evaluations_application_scored_xid_idx/);
    expect(cursorPoll).not.toMatch(/Seq Scan|Sort/);
    process.stdout.write(`first poll:\n${firstPoll}\n\ncursor poll:\n${cursorPoll}\n`);
  });
});
