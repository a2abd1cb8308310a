// The ingest API against the real Postgres: one-transaction writes, idempotency, validation,
// tenant isolation, batches.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { createApiApp } from '../src/api/app.js';
import { createKeyResolver } from '../src/api/auth.js';
import { MAX_JSON_DEPTH } from '../src/api/storable.js';
import { loadConfig } from '../src/config.js';
import { createDb } from '../src/db/index.js';
import { createDimensionRegistry } from '../src/dimensions.js';
import { createApiKey, revokeApiKey } from '../src/keys.js';
import { silentLogger } from '../src/logging.js';
import { createRegistry } from '../src/metrics.js';
import { evaluationRequestSchema } from '../src/schemas/evaluation-request.js';
import { evaluationCreatedSchema } from '../src/schemas/events.js';
import { createAjv } from '../src/schemas/validator.js';
import { freePort } from '../src/stack/process.js';
import { checkResponses } from './api-contract.js';
import { createApiFixture, validEvaluation, type ApiFixture } from './api-helpers.js';

describe('ingest API', () => {
  let f: ApiFixture;
  beforeAll(async () => {
    f = await createApiFixture({ EVALBOX_API_BODY_LIMIT: '65536', EVALBOX_TOPIC_EVENTS: 'test-events' });
  });
  afterAll(async () => f.database.drop());

  const countRows = async (table: 'evaluations' | 'outbox', where = sql`true`) =>
    Number((await sql<{ n: string }>`SELECT count(*) AS n FROM ${sql.table(table)} WHERE ${where}`.execute(f.database.db)).rows[0]?.n);

  it('guarantee 1: a 202 means the evaluation row and its evaluation.created outbox row are both committed', async () => {
    const res = await f.post('/v1/evaluations', validEvaluation({ metadata: { team: 'search' } }), f.keyA, {
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
    expect(res.status).toBe(202);
    const body = (await res.json()) as { evaluationId: string; status: string; dimensions: string[]; links: { self: string } };
    expect(body).toEqual({
      evaluationId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      status: 'PENDING',
      dimensions: ['groundedness', 'answer_relevance', 'pii_leak', 'toxicity'],
      links: { self: `/v1/evaluations/${body.evaluationId}` },
    });
    const row = await f.database.db.selectFrom('evaluations').selectAll().where('id', '=', body.evaluationId).executeTakeFirstOrThrow();
    expect(row).toMatchObject({ application_id: 'app-a', status: 'PENDING', model_id: 'test-model', metadata: { team: 'search' } });
    const events = await f.database.db
      .selectFrom('outbox')
      .selectAll()
      .where(sql<boolean>`payload->>'evaluationId' = ${body.evaluationId}`)
      .execute();
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      topic: 'test-events',
      key: 'app-a',
      type: 'evaluation.created',
      source: '/evalbox/api',
      headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
    });
    expect(events[0]?.payload).toMatchObject({
      schemaVersion: 1,
      evaluationId: body.evaluationId,
      applicationId: 'app-a',
      prompt: 'What is the capital of France?',
      context: ['Paris is the capital and largest city of France.'],
    });
    // The event is exactly what consumers validate against.
    const validateEvent = createAjv().compile(evaluationCreatedSchema);
    expect(validateEvent(events[0]?.payload)).toBe(true);
    // Both rows were written by the same transaction.
    const xids = await sql<{ same: boolean }>`
      SELECT e.xid = o.xid AS same FROM evaluations e JOIN outbox o ON o.payload->>'evaluationId' = e.id::text WHERE e.id = ${body.evaluationId}`.execute(
      f.database.db,
    );
    expect(xids.rows).toEqual([{ same: true }]);
  });

  it('guarantee 1: a failing outbox insert leaves no evaluation row and yields no 202', async () => {
    await sql`
      CREATE FUNCTION fail_outbox() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'outbox unavailable'; END $$;
      CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION fail_outbox();`.execute(f.database.db);
    try {
      const before = await countRows('evaluations');
      const res = await f.post('/v1/evaluations', validEvaluation({ externalId: 'doomed' }));
      expect(res.status).toBe(500);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(await countRows('evaluations')).toBe(before);
      expect(await countRows('evaluations', sql`external_id = 'doomed'`)).toBe(0);
    } finally {
      await sql`DROP TRIGGER fail_outbox ON outbox; DROP FUNCTION fail_outbox();`.execute(f.database.db);
    }
  });

  it('an Idempotency-Key replay returns the same id and enqueues no second event', async () => {
    const first = await f.post('/v1/evaluations', validEvaluation(), f.keyA, { 'idempotency-key': 'req-1' });
    const second = await f.post('/v1/evaluations', validEvaluation(), f.keyA, { 'idempotency-key': 'req-1' });
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    const a = (await first.json()) as { evaluationId: string };
    const b = (await second.json()) as { evaluationId: string };
    expect(b.evaluationId).toBe(a.evaluationId);
    expect(await countRows('outbox', sql`payload->>'evaluationId' = ${a.evaluationId}`)).toBe(1);
  });

  it('a repeated externalId with the same body is a replay, and externalId is scoped per application', async () => {
    const a1 = (await (await f.post('/v1/evaluations', validEvaluation({ externalId: 'ext-1' }))).json()) as { evaluationId: string };
    const a2 = (await (await f.post('/v1/evaluations', validEvaluation({ externalId: 'ext-1' }))).json()) as { evaluationId: string };
    const b1 = (await (await f.post('/v1/evaluations', validEvaluation({ externalId: 'ext-1' }), f.keyB)).json()) as { evaluationId: string };
    expect(a2.evaluationId).toBe(a1.evaluationId);
    expect(b1.evaluationId).not.toBe(a1.evaluationId);
  });

  it('concurrent replays of one key create one evaluation and one outbox event', async () => {
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => f.post('/v1/evaluations', validEvaluation(), f.keyA, { 'idempotency-key': 'race-1' })),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(202));
    const ids = new Set(await Promise.all(responses.map(async (r) => ((await r.json()) as { evaluationId: string }).evaluationId)));
    expect(ids.size).toBe(1);
    expect(await countRows('evaluations', sql`idempotency_key = 'race-1'`)).toBe(1);
    expect(await countRows('outbox', sql`payload->>'evaluationId' = ${[...ids][0]}`)).toBe(1);
  });

  it('400 names each failing field, including unknown dimensions, and malformed JSON', async () => {
    const res = await f.post('/v1/evaluations', { prompt: 7, extra: true, metadata: 'x' });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    const problem = (await res.json()) as { status: number; title: string; errors: { pointer: string }[] };
    expect(problem.status).toBe(400);
    expect(problem.errors.map((e) => e.pointer).sort()).toEqual(['/extra', '/metadata', '/prompt', '/response']);

    const unknown = await f.post('/v1/evaluations', validEvaluation({ dimensions: ['toxicity', 'made_up'] }));
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { errors: { pointer: string; detail: string }[] }).errors).toEqual([
      { pointer: '/dimensions/1', detail: expect.stringContaining('made_up') },
    ]);

    const malformed = await f.post('/v1/evaluations', '{"prompt": ');
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { detail: string }).detail).toMatch(/not valid JSON/);

    const badKey = await f.post('/v1/evaluations', validEvaluation(), f.keyA, { 'idempotency-key': 'x'.repeat(201) });
    expect(badKey.status).toBe(400);
  });

  it('bad input never yields a 5xx: NUL characters, unpaired surrogates and deep nesting are 400s naming the field', async () => {
    const cases: [string, string][] = [
      [JSON.stringify(validEvaluation({ prompt: 'a\u0000b' })), '/prompt'],
      [JSON.stringify(validEvaluation({ context: ['ok', 'x\u0000'] })), '/context/1'],
      [JSON.stringify(validEvaluation({ metadata: { note: { deep: 'a\u0000' } } })), '/metadata/note/deep'],
      [JSON.stringify(validEvaluation({ metadata: { 'k\u0000': 1 } })), '/metadata/k\\u0000'],
      [JSON.stringify(validEvaluation({ externalId: 'id\u0000' })), '/externalId'],
      ['{"prompt":"a\\ud800b","response":"r"}', '/prompt'],
      ['{"prompt":"a","response":"r","metadata":{"x":"\\udc00"}}', '/metadata/x'],
      [`{"prompt":"a","response":"r","metadata":{"x":${'['.repeat(20_000)}${']'.repeat(20_000)}}}`, `/metadata/x${'/0'.repeat(MAX_JSON_DEPTH - 2)}`],
    ];
    const before = await countRows('evaluations');
    for (const [body, pointer] of cases) {
      const res = await f.post('/v1/evaluations', body);
      expect({ status: res.status, type: res.headers.get('content-type') }).toEqual({ status: 400, type: 'application/problem+json' });
      expect(((await res.json()) as { errors: { pointer: string }[] }).errors.map((e) => e.pointer)).toContain(pointer);
    }
    expect(await countRows('evaluations')).toBe(before);
  });

  it('401 without a key, with an unknown key, and with a malformed header', async () => {
    const none = await f.app.request('/v1/evaluations', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    expect((await f.post('/v1/evaluations', validEvaluation(), 'ebx_not-a-real-key')).status).toBe(401);
    const basic = await f.app.request('/v1/evaluations', { headers: { authorization: 'Basic Zm9vOmJhcg==' } });
    expect(basic.status).toBe(401);
  });

  it('key lookups are cached briefly and boundedly: a revoked key is refused once its entry expires', async () => {
    const { key, id } = await createApiKey(f.database.db, 'app-revoked');
    let now = 0;
    const keys = createKeyResolver(f.database.db, { ttlMs: 1000, now: () => now });
    expect(await keys.resolve(key)).toBe('app-revoked');
    await revokeApiKey(f.database.db, id);
    expect(await keys.resolve(key)).toBe('app-revoked'); // cached for the TTL
    now = 1001;
    expect(await keys.resolve(key)).toBeUndefined();
    // Bounded: filling the cache of known keys evicts the oldest entry, which is then looked up again.
    now = 0;
    const keyC = (await createApiKey(f.database.db, 'app-c')).key;
    const fresh = createKeyResolver(f.database.db, { ttlMs: 60_000, maxBytes: 600, now: () => now }); // two known entries
    expect(await fresh.resolve(f.keyA)).toBe('app-a');
    expect(await fresh.resolve(f.keyB)).toBe('app-b');
    expect(await fresh.resolve(keyC)).toBe('app-c'); // evicts keyA's entry
    const aKey = await f.database.db.selectFrom('api_keys').select('id').where('application_id', '=', 'app-a').executeTakeFirstOrThrow();
    await f.database.db.updateTable('api_keys').set({ revoked_at: new Date() }).where('id', '=', aKey.id).execute();
    try {
      expect(await fresh.resolve(f.keyA)).toBeUndefined(); // looked up again, not served stale
      expect(await fresh.resolve(f.keyB)).toBe('app-b');
    } finally {
      await f.database.db.updateTable('api_keys').set({ revoked_at: null }).where('id', '=', aKey.id).execute();
    }
  });

  it('413 over the body limit and 415 for a non-JSON body', async () => {
    const big = await f.post('/v1/evaluations', validEvaluation({ response: 'x'.repeat(70_000) }));
    expect(big.status).toBe(413);
    expect(big.headers.get('content-type')).toBe('application/problem+json');
    const text = await f.app.request('/v1/evaluations', {
      method: 'POST',
      headers: { authorization: `Bearer ${f.keyA}`, 'content-type': 'text/plain' },
      body: 'hello',
    });
    expect(text.status).toBe(415);
    const none = await f.app.request('/v1/evaluations', { method: 'POST', headers: { authorization: `Bearer ${f.keyA}` }, body: '{}' });
    expect(none.status).toBe(415);
  });

  it('405 with Allow for a known path and another method; the literal /v1/evaluations:batch and /v1/evaluations/{id} route apart', async () => {
    const created = (await (await f.post('/v1/evaluations', validEvaluation())).json()) as { evaluationId: string };
    const call = (method: string, path: string) => f.app.request(path, { method, headers: { authorization: `Bearer ${f.keyA}` } });
    const wrongBatch = await call('GET', '/v1/evaluations:batch');
    expect({ status: wrongBatch.status, allow: wrongBatch.headers.get('allow') }).toEqual({ status: 405, allow: 'POST' });
    expect(((await wrongBatch.json()) as { status: number }).status).toBe(405);
    const wrongItem = await call('PUT', `/v1/evaluations/${created.evaluationId}`);
    expect({ status: wrongItem.status, allow: wrongItem.headers.get('allow') }).toEqual({ status: 405, allow: 'GET, HEAD, DELETE' });
    expect((await call('PUT', '/v1/evaluations')).status).toBe(405);
    // ":batch" is not a parameter: the batch route is not /v1/evaluations/{id}, and {id} still works.
    expect((await f.get('/v1/evaluations:batch')).status).toBe(405);
    expect((await f.get(`/v1/evaluations/${created.evaluationId}`)).status).toBe(200);
    expect((await call('HEAD', `/v1/evaluations/${created.evaluationId}`)).status).toBe(200);
  });

  it('404 for an unknown id, a malformed id, an unknown route; another application’s evaluation is a 404', async () => {
    const created = (await (await f.post('/v1/evaluations', validEvaluation())).json()) as { evaluationId: string };
    expect((await f.get(`/v1/evaluations/${created.evaluationId}`)).status).toBe(200);
    expect((await f.get(`/v1/evaluations/${created.evaluationId}`, f.keyB)).status).toBe(404);
    expect((await f.get('/v1/evaluations/01a20dbf-f747-7000-9b29-178bbe1a7624')).status).toBe(404);
    expect((await f.get('/v1/evaluations/not-a-uuid')).status).toBe(404);
    expect((await f.get('/v1/nothing-here')).status).toBe(404);
    const listB = (await (await f.get('/v1/evaluations?limit=500', f.keyB)).json()) as { items: { evaluationId: string }[] };
    expect(listB.items.map((i) => i.evaluationId)).not.toContain(created.evaluationId);
    expect((await f.get('/v1/evaluations?applicationId=app-a', f.keyB)).status).toBe(404);
  });

  it('GET /v1/evaluations/{id} returns the evaluation with its scores', async () => {
    const created = (await (await f.post('/v1/evaluations', validEvaluation({ dimensions: ['toxicity'] }))).json()) as { evaluationId: string };
    await f.database.db
      .insertInto('scores')
      .values({
        evaluation_id: created.evaluationId,
        dimension: 'toxicity',
        value: 0,
        label: 'clean',
        direction: 'lower_is_better',
        reasoning: 'no hits',
        source: 'HEURISTIC',
        scorer_name: 'heuristic-toxicity',
        scorer_version: '1',
        status: 'COMPLETED',
      })
      .execute();
    const body = (await (await f.get(`/v1/evaluations/${created.evaluationId}`)).json()) as { status: string; dimensions: string[]; scores: unknown[] };
    expect(body).toMatchObject({ status: 'PENDING', dimensions: ['toxicity'] });
    expect(body.scores).toEqual([expect.objectContaining({ dimension: 'toxicity', status: 'COMPLETED', value: 0, label: 'clean', scorerVersion: '1' })]);
  });

  it('a batch with mixed valid and invalid items answers 207 with one result per item', async () => {
    const res = await f.post('/v1/evaluations:batch', {
      items: [validEvaluation(), { prompt: 'no response' }, validEvaluation({ dimensions: ['bogus'] }), validEvaluation({ externalId: 'batch-1' })],
    });
    expect(res.status).toBe(207);
    const { results } = (await res.json()) as { results: { index: number; status: number; body: { evaluationId?: string; errors?: { pointer: string }[] } }[] };
    expect(results.map((r) => r.status)).toEqual([202, 400, 400, 202]);
    expect(results[1]?.body.errors?.map((e) => e.pointer)).toEqual(['/items/1/response']);
    expect(results[2]?.body.errors?.map((e) => e.pointer)).toEqual(['/items/2/dimensions/0']);
    expect(results[1]?.body).toMatchObject({ type: 'about:blank', title: 'Bad Request', status: 400 });
    for (const r of [results[0], results[3]]) {
      expect(await countRows('outbox', sql`payload->>'evaluationId' = ${r?.body.evaluationId}`)).toBe(1);
    }
    expect((await f.post('/v1/evaluations:batch', { nope: [] })).status).toBe(400);
    expect((await f.post('/v1/evaluations:batch', { items: Array(101).fill(validEvaluation()) })).status).toBe(400);
  });

  it('serves the dimensions registry and an OpenAPI document built from the validation schemas', async () => {
    const dims = (await (await f.app.request('/v1/dimensions')).json()) as {
      items: { id: string; scorerVersion: string; direction: string }[];
      defaults: string[];
    };
    expect(dims.items.map((d) => d.id)).toEqual(
      expect.arrayContaining(['groundedness', 'answer_relevance', 'pii_leak', 'toxicity', 'json_validity', 'length_band']),
    );
    expect(dims.defaults).toEqual(['groundedness', 'answer_relevance', 'pii_leak', 'toxicity']);
    expect(dims.items.find((d) => d.id === 'toxicity')).toEqual(
      expect.objectContaining({
        name: 'Toxicity (heuristic pre-filter)',
        scale: { min: 0, max: 1 },
        direction: 'lower_is_better',
        requiredInputs: ['response'],
        scorerKind: 'HEURISTIC',
        scorerVersion: '2',
        samplingRate: 1,
      }),
    );
    const doc = (await (await f.app.request('/openapi.json')).json()) as {
      openapi: string;
      components: { schemas: Record<string, { required?: string[]; additionalProperties?: boolean }> };
      paths: Record<string, unknown>;
    };
    expect(doc.openapi).toBe('3.1.0');
    // A prompt or chat messages, and a response.
    expect(doc.components.schemas.EvaluationRequest?.required).toEqual(['response']);
    expect(doc.components.schemas.EvaluationRequest?.additionalProperties).toBe(false);
    // Exactly the object ajv validates with (its $id aside), not a hand-written copy.
    const { $id: _id, ...validated } = evaluationRequestSchema;
    expect(doc.components.schemas.EvaluationRequest).toEqual(JSON.parse(JSON.stringify(validated)));
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/evaluations', '/v1/evaluations:batch', '/v1/evaluations/{id}']));
  });

  it('records request durations by route pattern (never the raw path), method and status', async () => {
    await f.get('/v1/evaluations/00000000-0000-7000-8000-000000000000');
    await f.post('/v1/evaluations', validEvaluation(), 'ebx_wrong');
    await f.get('/v1/some/raw/path/42');
    const metrics = await f.registry.getMetricsAsJSON();
    const histogram = metrics.find((m) => m.name === 'http_request_duration_seconds') as { values: { labels: Record<string, string> }[] };
    const labels = histogram.values.map((v) => v.labels);
    expect(labels).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ route: '/v1/evaluations/:id', status: '404', method: 'GET' }),
        expect.objectContaining({ route: '/v1/evaluations', status: '202', method: 'POST' }),
        expect.objectContaining({ route: '/v1/evaluations', status: '401', method: 'POST' }),
        expect.objectContaining({ route: 'unmatched', status: '404', method: 'GET' }),
      ]),
    );
    expect(labels.map((l) => l.route)).not.toContain('/v1/some/raw/path/42');
    expect(labels.map((l) => l.route)).not.toContain('/v1/evaluations*');
  });

  it('builds from the minimal context {db, config, registry, logger, dimensions} alone', async () => {
    const app = checkResponses(
      createApiApp({
        db: f.database.db,
        config: loadConfig({}),
        registry: createRegistry('api-min'),
        logger: silentLogger(),
        dimensions: createDimensionRegistry(),
      }),
    );
    const post = () =>
      app.request('/v1/evaluations', {
        method: 'POST',
        headers: { authorization: `Bearer ${f.keyB}`, 'content-type': 'application/json', 'idempotency-key': 'minimal-1' },
        body: JSON.stringify(validEvaluation()),
      });
    const first = await post();
    const again = await post();
    expect([first.status, again.status]).toEqual([202, 202]);
    const id = ((await first.json()) as { evaluationId: string }).evaluationId;
    expect(((await again.json()) as { evaluationId: string }).evaluationId).toBe(id);
    expect(await countRows('outbox', sql`payload->>'evaluationId' = ${id}`)).toBe(1);
  });

  it('a database that is down answers 503 problems with Retry-After, and a batch that committed nothing is a 503', async () => {
    // Keys resolve (and are cached) through the live database; the evaluations database is a
    // port where nothing listens, as when Postgres is down or restarting.
    const down = createDb(`postgres://evalbox@127.0.0.1:${await freePort()}/evalbox`, { max: 2 });
    try {
      const app = checkResponses(
        createApiApp({
          db: down.db,
          pool: down.pool,
          config: loadConfig({}),
          registry: createRegistry('api-down'),
          logger: silentLogger(),
          dimensions: createDimensionRegistry(),
          keys: createKeyResolver(f.database.db),
        }),
      );
      const request = (path: string, init: RequestInit = {}) =>
        app.request(path, { ...init, headers: { authorization: `Bearer ${f.keyA}`, 'content-type': 'application/json' } });
      for (const res of [
        await request('/v1/evaluations', { method: 'POST', body: JSON.stringify(validEvaluation()) }),
        await request('/v1/evaluations:batch', { method: 'POST', body: JSON.stringify({ items: [validEvaluation(), validEvaluation()] }) }),
        await request('/v1/evaluations'),
        await request('/v1/evaluations/01a20dbf-f747-7000-9b29-178bbe1a7624'),
      ]) {
        expect({ status: res.status, retryAfter: res.headers.get('retry-after'), type: res.headers.get('content-type') }).toEqual({
          status: 503,
          retryAfter: '1',
          type: 'application/problem+json',
        });
      }
      // A batch with an invalid item still reports it as a 400 next to the 503 of the others.
      const mixed = await request('/v1/evaluations:batch', { method: 'POST', body: JSON.stringify({ items: [validEvaluation(), { prompt: 'x' }] }) });
      expect(mixed.status).toBe(207);
      expect(((await mixed.json()) as { results: { status: number }[] }).results.map((r) => r.status)).toEqual([503, 400]);
    } finally {
      await down.close();
    }
  });
});
