// Group commit and idempotency on the ingest path, against the real Postgres: concurrent POSTs
// share one statement and one commit, a batch is one statement in request order, a group that
// dies mid-commit acknowledges nothing, and an Idempotency-Key is bound to its request body.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import pg from 'pg';
import { jsonbTextBytes, jsonbTextBytesUpperBound } from '../src/events.js';
import { createApiFixture, validEvaluation, type ApiFixture } from './api-helpers.js';

type Accepted = { evaluationId: string };

describe('ingest: group commit and idempotency', () => {
  let f: ApiFixture;
  beforeAll(async () => {
    // A window long enough that requests started together always meet in one group.
    f = await createApiFixture({ EVALBOX_API_GROUP_COMMIT_WINDOW_MS: '200', EVALBOX_API_GROUP_COMMIT_MAX_ROWS: '64' });
    // Resolve the keys once, so that requests started together reach the writer together.
    await f.get('/v1/dimensions', f.keyA);
    await f.post('/v1/evaluations', validEvaluation(), f.keyA);
    await f.post('/v1/evaluations', validEvaluation(), f.keyB);
  });
  afterAll(async () => f.database.drop());

  /** A metric's current value (summed over series matching `labels`); histograms by their _count / _sum. */
  const metric = async (name: string, labels: Record<string, string> = {}) =>
    (await f.registry.getMetricsAsJSON())
      .flatMap((m) => m.values as { metricName?: string; value: number; labels: Record<string, string | number> }[])
      .filter((v) => (v.metricName ?? '') === name && Object.entries(labels).every(([k, x]) => v.labels[k] === x))
      .reduce((sum, v) => sum + v.value, 0);

  const xidsOf = async (ids: string[]) =>
    (await sql<{ id: string; xid: string }>`SELECT id::text, xid::text FROM evaluations WHERE id = ANY(${ids}::uuid[])`.execute(f.database.db)).rows;
  const exists = async (id: string) =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM evaluations WHERE id = ${id}`.execute(f.database.db)).rows[0]?.n === 1;

  it('concurrent POSTs are written by one transaction, and each 202 has its evaluation and outbox rows', async () => {
    const committed = { outcome: 'committed' };
    const [statementsBefore, rowsBefore, queuedBefore] = [
      await metric('evalbox_api_ingest_statement_rows_count', committed),
      await metric('evalbox_api_ingest_statement_rows_sum', committed),
      await metric('evalbox_api_ingest_queue_seconds_count'),
    ];
    const responses = await Promise.all(Array.from({ length: 10 }, (_, i) => f.post('/v1/evaluations', validEvaluation({ prompt: `group ${i}` }))));
    expect(responses.map((r) => r.status)).toEqual(Array(10).fill(202));
    // What an operator sees: one committed statement of 10 rows, 10 requests that queued for it.
    expect((await metric('evalbox_api_ingest_statement_rows_count', committed)) - statementsBefore).toBe(1);
    expect((await metric('evalbox_api_ingest_statement_rows_sum', committed)) - rowsBefore).toBe(10);
    expect((await metric('evalbox_api_ingest_queue_seconds_count')) - queuedBefore).toBe(10);
    const ids = await Promise.all(responses.map(async (r) => ((await r.json()) as Accepted).evaluationId));
    const rows = await xidsOf(ids);
    expect(rows).toHaveLength(10);
    expect(new Set(rows.map((r) => r.xid)).size).toBe(1);
    const events = await sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox WHERE payload->>'evaluationId' = ANY(${ids}::text[])`.execute(f.database.db);
    expect(events.rows[0]?.n).toBe(10);
  });

  it('two requests with the same Idempotency-Key in one group make one row, and both get its id', async () => {
    const [a, b] = await Promise.all([
      f.post('/v1/evaluations', validEvaluation(), f.keyA, { 'idempotency-key': 'same-group' }),
      f.post('/v1/evaluations', validEvaluation(), f.keyA, { 'idempotency-key': 'same-group' }),
    ]);
    expect([a?.status, b?.status]).toEqual([202, 202]);
    const ids = [((await a?.json()) as Accepted).evaluationId, ((await b?.json()) as Accepted).evaluationId];
    expect(ids[0]).toBe(ids[1]);
    expect([a?.headers.get('idempotent-replayed'), b?.headers.get('idempotent-replayed')].sort()).toEqual(['true', null].sort());
    const n = await sql<{ n: number }>`SELECT count(*)::int AS n FROM evaluations WHERE idempotency_key = 'same-group'`.execute(f.database.db);
    expect(n.rows[0]?.n).toBe(1);
  });

  it('a group whose backend is terminated while it writes acknowledges nothing that was not committed', async () => {
    // An open transaction holds a key that one member of the next group also uses: the group's
    // statement waits on it (ON CONFLICT waits for the holder), and is terminated while it waits.
    const blocker = new pg.Client({ connectionString: f.database.url });
    const watcher = new pg.Client({ connectionString: f.database.url });
    await blocker.connect();
    await watcher.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(
        `INSERT INTO evaluations (id, application_id, prompt, response, dimensions, idempotency_key) VALUES (gen_random_uuid(), 'app-a', 'p', 'r', '{toxicity}', 'held')`,
      );
      const pending = Array.from({ length: 6 }, (_, i) =>
        f.post('/v1/evaluations', validEvaluation({ prompt: `doomed ${i}` }), f.keyA, i === 3 ? { 'idempotency-key': 'held' } : {}),
      );
      let terminated = 0;
      for (let attempt = 0; attempt < 200 && terminated === 0; attempt++) {
        await new Promise((r) => setTimeout(r, 25));
        // (Not from the blocker: activity statistics are a snapshot per transaction.)
        const { rows } = await watcher.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO evaluations%' AND pid <> pg_backend_pid()`,
        );
        for (const { pid } of rows) terminated += (await watcher.query<{ t: boolean }>('SELECT pg_terminate_backend($1) AS t', [pid])).rows[0]?.t ? 1 : 0;
      }
      expect(terminated).toBe(1);
      const responses = await Promise.all(pending);
      await blocker.query('ROLLBACK');
      const statuses = responses.map((r) => r.status);
      // Every member of the terminated group failed as a whole (nothing was committed)...
      expect(statuses).toEqual(Array(6).fill(503));
      const bodies = await Promise.all(responses.map(async (r) => (await r.json()) as { evaluationId?: string }));
      expect(bodies.every((b) => b.evaluationId === undefined)).toBe(true);
      const doomed = await sql<{ n: number }>`SELECT count(*)::int AS n FROM evaluations WHERE prompt LIKE 'doomed %'`.execute(f.database.db);
      expect(doomed.rows[0]?.n).toBe(0);
    } finally {
      await blocker.end();
      await watcher.end();
    }
  });

  it('a row the database refuses fails alone: the rest of its group is committed and acknowledged', async () => {
    await sql`ALTER TABLE evaluations ADD CONSTRAINT test_refuse_poison CHECK (prompt <> 'poison')`.execute(f.database.db);
    try {
      const prompts = ['fine 1', 'poison', 'fine 2', 'fine 3'];
      const statements = async (outcome: string) => [
        await metric('evalbox_api_ingest_statement_rows_count', { outcome }),
        await metric('evalbox_api_ingest_statement_rows_sum', { outcome }),
      ];
      const [failedBefore, committedBefore] = [await statements('failed'), await statements('committed')];
      const responses = await Promise.all(prompts.map((prompt) => f.post('/v1/evaluations', validEvaluation({ prompt }))));
      expect(responses.map((r) => r.status === 202)).toEqual([true, false, true, true]);
      // The metrics count statements, not groups: the group of 4 failed, then each row was
      // written alone (3 commits) and the poison row failed again.
      const [failedAfter, committedAfter] = [await statements('failed'), await statements('committed')];
      expect(failedAfter.map((v, i) => v - (failedBefore[i] as number))).toEqual([2, 5]);
      expect(committedAfter.map((v, i) => v - (committedBefore[i] as number))).toEqual([3, 3]);
      for (const [i, r] of responses.entries()) {
        if (r.status !== 202) continue;
        expect(await exists(((await r.json()) as Accepted).evaluationId)).toBe(true);
        expect(prompts[i]).not.toBe('poison');
      }
      const poison = await sql<{ n: number }>`SELECT count(*)::int AS n FROM evaluations WHERE prompt = 'poison'`.execute(f.database.db);
      expect(poison.rows[0]?.n).toBe(0);
    } finally {
      await sql`ALTER TABLE evaluations DROP CONSTRAINT test_refuse_poison`.execute(f.database.db);
    }
  });

  it('a batch is written by one statement in request order: one transaction, outbox seq follows the items', async () => {
    const items = Array.from({ length: 30 }, (_, i) => validEvaluation({ prompt: `ordered ${i}` }));
    const res = await f.post('/v1/evaluations:batch', { items });
    expect(res.status).toBe(207);
    const { results } = (await res.json()) as { results: { index: number; status: number; body: Accepted }[] };
    const ids = results.map((r) => r.body.evaluationId);
    expect(results.map((r) => r.status)).toEqual(Array(30).fill(202));
    expect(new Set((await xidsOf(ids)).map((r) => r.xid)).size).toBe(1);
    const events = await sql<{ id: string }>`
      SELECT payload->>'evaluationId' AS id FROM outbox WHERE payload->>'evaluationId' = ANY(${ids}::text[]) ORDER BY xid, seq`.execute(f.database.db);
    expect(events.rows.map((e) => e.id)).toEqual(ids);
  });

  it('idempotency finding: a replay with the same key and a different body is refused with 422, not answered with the old evaluation', async () => {
    const first = await f.post('/v1/evaluations', validEvaluation({ response: 'first body' }), f.keyA, { 'idempotency-key': 'fp-1' });
    expect(first.status).toBe(202);
    const same = await f.post('/v1/evaluations', validEvaluation({ response: 'first body' }), f.keyA, { 'idempotency-key': 'fp-1' });
    expect(same.status).toBe(202);
    expect(same.headers.get('idempotent-replayed')).toBe('true');
    const other = await f.post('/v1/evaluations', validEvaluation({ response: 'a different body' }), f.keyA, { 'idempotency-key': 'fp-1' });
    expect(other.status).toBe(422);
    expect(other.headers.get('content-type')).toBe('application/problem+json');
    const n = await sql<{ n: number }>`SELECT count(*)::int AS n FROM evaluations WHERE idempotency_key = 'fp-1'`.execute(f.database.db);
    expect(n.rows[0]?.n).toBe(1);
  });

  it('idempotency finding: the Idempotency-Key and the body externalId are kept apart, neither overwrites the other', async () => {
    const res = await f.post('/v1/evaluations', validEvaluation({ externalId: 'ticket-42' }), f.keyA, { 'idempotency-key': 'retry-token-1' });
    expect(res.status).toBe(202);
    const { evaluationId } = (await res.json()) as Accepted;
    const got = (await (await f.get(`/v1/evaluations/${evaluationId}`)).json()) as { externalId: string };
    expect(got.externalId).toBe('ticket-42');
    // externalId is unique per application: another request naming it with another body is a conflict.
    const clash = await f.post('/v1/evaluations', validEvaluation({ externalId: 'ticket-42', response: 'another' }), f.keyA, {
      'idempotency-key': 'retry-token-2',
    });
    expect(clash.status).toBe(409);
    // ...and in another application it is free.
    expect((await f.post('/v1/evaluations', validEvaluation({ externalId: 'ticket-42' }), f.keyB)).status).toBe(202);
  });

  it('idempotency finding: a key is honoured for its retention window, then creates a new evaluation', async () => {
    const first = (await (await f.post('/v1/evaluations', validEvaluation(), f.keyA, { 'idempotency-key': 'old-key' })).json()) as Accepted;
    await sql`UPDATE evaluations SET created_at = now() - interval '25 hours' WHERE id = ${first.evaluationId}`.execute(f.database.db);
    const later = await f.post('/v1/evaluations', validEvaluation({ response: 'a day later' }), f.keyA, { 'idempotency-key': 'old-key' });
    expect(later.status).toBe(202);
    expect(later.headers.get('idempotent-replayed')).toBeNull();
    expect(((await later.json()) as Accepted).evaluationId).not.toBe(first.evaluationId);
  });

  it('idempotency finding: a batch accepts an Idempotency-Key; a replay returns each item’s evaluation and writes nothing', async () => {
    const items = [validEvaluation({ prompt: 'batch key 0' }), validEvaluation({ prompt: 'batch key 1' })];
    const first = (await (await f.post('/v1/evaluations:batch', { items }, f.keyA, { 'idempotency-key': 'batch-1' })).json()) as {
      results: { status: number; body: Accepted }[];
    };
    const again = (await (await f.post('/v1/evaluations:batch', { items }, f.keyA, { 'idempotency-key': 'batch-1' })).json()) as {
      results: { status: number; replayed?: boolean; body: Accepted }[];
    };
    expect(again.results.map((r) => r.body.evaluationId)).toEqual(first.results.map((r) => r.body.evaluationId));
    expect(again.results.map((r) => r.replayed)).toEqual([true, true]);
    const n = await sql<{ n: number }>`SELECT count(*)::int AS n FROM evaluations WHERE prompt LIKE 'batch key %'`.execute(f.database.db);
    expect(n.rows[0]?.n).toBe(2);
  });

  it('outbox size finding: an event is measured as the relay sends it (jsonb text), so one that Kafka would refuse is a 413 at insert', async () => {
    // 380,000 small numbers: about 760 KB as JSON in the request, over 1 MB as Postgres prints the jsonb back.
    const metadata = { samples: Array.from({ length: 380_000 }, () => 1) };
    const res = await f.post('/v1/evaluations', validEvaluation({ metadata }));
    expect(res.status).toBe(413);
  });

  it('the size the insert-time check computes is the length of what Postgres prints back', async () => {
    const values: unknown[] = [
      { a: 1, b: [1, 2, { c: 'x' }], d: null, e: true, f: false },
      [1e21, 1.5e-7, -2.5e-8, 123.456, 0, -0, 1e300, 5e-324],
      { 'ke"y': 'va\\lue\n\t\u0001', emoji: '😀', nested: { deeper: [[], {}, [[]]] } },
      'plain',
      [],
      {},
      // The most a text can grow by: separators only, and 3-byte characters only.
      [[[], [], []], { a: {}, b: [] }],
      '€€€€',
      { 'é€': ['€', 'x'] },
    ];
    for (const value of values) {
      const { rows } = await sql<{ n: number }>`SELECT octet_length(${JSON.stringify(value)}::jsonb::text) AS n`.execute(f.database.db);
      expect(jsonbTextBytes(value)).toBe(rows[0]?.n);
      // The shortcut that skips the exact walk never says less than Postgres prints.
      const bound = jsonbTextBytesUpperBound(JSON.stringify(value));
      if (bound !== undefined) expect(bound).toBeGreaterThanOrEqual(rows[0]?.n as number);
    }
    // Numbers in exponent notation grow without bound: no shortcut for them.
    for (const n of [1e300, 1e21, -1e21, 1.5e-7, -5e-324]) expect(jsonbTextBytesUpperBound(JSON.stringify({ a: [n] }))).toBeUndefined();
    expect(jsonbTextBytesUpperBound(JSON.stringify({ a: [1e20, 1e-6, 0], id: '0193e4d2-7e3f-7000-8000-00000000003e' }))).toBeDefined();
  });
});

describe('ingest: at most EVALBOX_API_GROUP_MAX_IN_FLIGHT groups in flight', () => {
  let f: ApiFixture;
  beforeAll(async () => {
    f = await createApiFixture({ EVALBOX_API_GROUP_COMMIT_WINDOW_MS: '0', EVALBOX_API_GROUP_MAX_IN_FLIGHT: '1' });
    await f.post('/v1/evaluations', validEvaluation(), f.keyA);
  });
  afterAll(async () => f.database.drop());

  it('with one group in flight, POSTs that arrive meanwhile wait, then are written as ONE next group, each 202 after its commit', async () => {
    // The group in flight waits on a lock: an open transaction holds the Idempotency-Key it uses.
    const blocker = new pg.Client({ connectionString: f.database.url });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(
        `INSERT INTO evaluations (id, application_id, prompt, response, dimensions, idempotency_key) VALUES (gen_random_uuid(), 'app-a', 'p', 'r', '{toxicity}', 'held-k1')`,
      );
      const first = f.post('/v1/evaluations', validEvaluation({ prompt: 'in flight' }), f.keyA, { 'idempotency-key': 'held-k1' });
      let waiting = 0;
      for (let attempt = 0; attempt < 200 && waiting === 0; attempt++) {
        await new Promise((r) => setTimeout(r, 25));
        const { rows } = await sql<{ n: number }>`
          SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO evaluations%'`.execute(f.database.db);
        waiting = rows[0]?.n ?? 0;
      }
      expect(waiting).toBe(1);
      let answered = 0;
      const later = Array.from({ length: 5 }, (_, i) => f.post('/v1/evaluations', validEvaluation({ prompt: `behind ${i}` })).finally(() => answered++));
      await new Promise((r) => setTimeout(r, 300));
      // Many windows of 0 ms have passed: with the one slot taken, none of them was written.
      const written = await sql<{ n: number }>`SELECT count(*)::int AS n FROM evaluations WHERE prompt LIKE 'behind %'`.execute(f.database.db);
      expect([answered, written.rows[0]?.n]).toEqual([0, 0]);
      await blocker.query('ROLLBACK');
      expect((await first).status).toBe(202);
      const responses = await Promise.all(later);
      expect(responses.map((r) => r.status)).toEqual(Array(5).fill(202));
      const ids = await Promise.all(responses.map(async (r) => ((await r.json()) as Accepted).evaluationId));
      const { rows } = await sql<{ xid: string }>`SELECT xid::text FROM evaluations WHERE id = ANY(${ids}::uuid[])`.execute(f.database.db);
      expect(rows).toHaveLength(5);
      expect(new Set(rows.map((r) => r.xid)).size).toBe(1);
    } finally {
      await blocker.end();
    }
  });
});
