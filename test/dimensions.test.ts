// The dimensions registry the API serves: the built-ins plus what the scorers published.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createPublishedDimensionRegistry, HEURISTIC_DIMENSIONS, publishDimensions } from '../src/dimensions.js';
import { JUDGE_DIMENSIONS } from '../consumers/judge/index.js';
import { sql } from 'kysely';
import { createApiApp } from '../src/api/app.js';
import { createKeyResolver } from '../src/api/auth.js';
import { loadConfig } from '../src/config.js';
import { createApiKey } from '../src/keys.js';
import { silentLogger } from '../src/logging.js';
import { createRegistry } from '../src/metrics.js';
import { createTestDatabase, type TestDatabase } from './helpers.js';

describe('published dimensions', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase({ max: 2 });
  });
  afterAll(async () => database.drop());

  it('adds the judge rubrics a scorer publishes to the built-in heuristics, after a refresh', async () => {
    const registry = await createPublishedDimensionRegistry(database.db, { refreshMs: 60_000 });
    try {
      expect(registry.get('judge_relevance')).toBeUndefined();
      expect(registry.list().map((d) => d.id)).toEqual(HEURISTIC_DIMENSIONS.map((d) => d.id));
      await publishDimensions(database.db, [...HEURISTIC_DIMENSIONS, ...JUDGE_DIMENSIONS]);
      await publishDimensions(database.db, JUDGE_DIMENSIONS); // republishing is idempotent
      await registry.refresh();
      expect(registry.get('judge_relevance')).toMatchObject({ scorerKind: 'LLM_JUDGE', direction: 'higher_is_better' });
      expect(registry.list()).toHaveLength(HEURISTIC_DIMENSIONS.length + JUDGE_DIMENSIONS.length);
      expect(registry.defaults).toEqual(['groundedness', 'answer_relevance', 'pii_leak', 'toxicity']);
    } finally {
      registry.close();
    }
  });
});

describe('dimensions without a trap', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase({ max: 5 });
  });
  afterAll(async () => database.drop());

  async function api(dimensions: Awaited<ReturnType<typeof createPublishedDimensionRegistry>>) {
    const app = createApiApp({
      db: database.db,
      pool: database.pool,
      config: loadConfig({ DATABASE_URL: database.url }),
      registry: createRegistry('api-test'),
      logger: silentLogger(),
      dimensions,
      keys: createKeyResolver(database.db),
    });
    const { key } = await createApiKey(database.db, `app-${Math.random().toString(36).slice(2)}`);
    return (body: unknown) =>
      app.request('/v1/evaluations', {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
  }
  const evaluation = (dimensions: string[]) => ({ prompt: 'What is the capital of France?', response: 'Paris.', dimensions });

  it('a judge dimension published after the API started is accepted on the first request, without waiting for the refresh timer', async () => {
    await database.db.deleteFrom('dimensions').execute();
    const registry = await createPublishedDimensionRegistry(database.db, { refreshMs: 600_000 });
    try {
      const post = await api(registry);
      // A scorer with a judge starts a moment later (the registry refreshes on a miss at most
      // every 250 ms; the old code only on its timer, here ten minutes).
      await new Promise((r) => setTimeout(r, 300));
      await publishDimensions(database.db, JUDGE_DIMENSIONS);
      const res = await post(evaluation(['judge_relevance', 'toxicity']));
      expect(res.status).toBe(202);
    } finally {
      registry.close();
    }
  });

  it('a dimension no running scorer offers any more is a 400 naming what is missing, not an ERROR score later', async () => {
    await database.db.deleteFrom('dimensions').execute();
    await publishDimensions(database.db, JUDGE_DIMENSIONS);
    // The scorers that published it stopped long ago: their heartbeat is old.
    await sql`UPDATE dimensions SET updated_at = now() - interval '10 minutes'`.execute(database.db);
    const registry = await createPublishedDimensionRegistry(database.db, { refreshMs: 600_000 });
    try {
      const post = await api(registry);
      const res = await post(evaluation(['judge_relevance', 'bogus_dimension']));
      expect(res.status).toBe(400);
      const body = (await res.json()) as { errors: { pointer: string; detail: string }[] };
      expect(body.errors).toEqual([
        { pointer: '/dimensions/0', detail: expect.stringMatching(/no running scorer offers "judge_relevance".*judge/) },
        { pointer: '/dimensions/1', detail: expect.stringMatching(/unknown dimension "bogus_dimension"/) },
      ]);
      expect(registry.list().map((d) => d.id)).not.toContain('judge_relevance');
    } finally {
      registry.close();
    }
  });
});
