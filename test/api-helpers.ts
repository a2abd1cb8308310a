// Builds the API app in-process on a test database, with a key for each of two applications.
import { expect } from '@jest/globals';
import { createApiApp } from '../src/api/app.js';
import { createKeyResolver } from '../src/api/auth.js';
import { loadConfig } from '../src/config.js';
import { createDimensionRegistry } from '../src/dimensions.js';
import { createApiKey } from '../src/keys.js';
import { silentLogger } from '../src/logging.js';
import { createRegistry } from '../src/metrics.js';
import { checkResponses } from './api-contract.js';
import { createTestDatabase, type TestDatabase } from './helpers.js';

export interface ApiFixture {
  database: TestDatabase;
  app: ReturnType<typeof createApiApp>;
  registry: ReturnType<typeof createRegistry>;
  keyA: string;
  keyB: string;
  post(path: string, body: unknown, key?: string, headers?: Record<string, string>): Promise<Response>;
  get(path: string, key?: string): Promise<Response>;
}

export async function createApiFixture(env: Record<string, string> = {}): Promise<ApiFixture> {
  const database = await createTestDatabase({ max: 20 });
  const config = loadConfig({ ...env, DATABASE_URL: database.url });
  const registry = createRegistry('api-test');
  const app = checkResponses(
    createApiApp({
      db: database.db,
      pool: database.pool,
      config,
      registry,
      logger: silentLogger(),
      dimensions: createDimensionRegistry(),
      keys: createKeyResolver(database.db),
    }),
  );
  const keyA = (await createApiKey(database.db, 'app-a')).key;
  const keyB = (await createApiKey(database.db, 'app-b')).key;
  return {
    database,
    app,
    registry,
    keyA,
    keyB,
    post: async (path, body, key = keyA, headers = {}) =>
      app.request(path, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      }),
    get: async (path, key = keyA) => app.request(path, { headers: { authorization: `Bearer ${key}` } }),
  };
}

export const validEvaluation = (overrides: Record<string, unknown> = {}) => ({
  prompt: 'What is the capital of France?',
  response: 'Paris is the capital of France.',
  context: ['Paris is the capital and largest city of France.'],
  modelId: 'test-model',
  ...overrides,
});

/** One page of GET /v1/evaluations, with the fields the listing tests read. */
export interface EvaluationsPage {
  items: { evaluationId: string; status: string; scoredAt: string | null }[];
  nextCursor: string | null;
  hasMore: boolean;
}

/** GET /v1/evaluations?`query` as `key`; the answer must be 200. */
export async function listEvaluations(f: ApiFixture, query: string, key?: string): Promise<EvaluationsPage> {
  const res = await f.get(`/v1/evaluations?${query}`, key);
  expect(res.status).toBe(200);
  return (await res.json()) as EvaluationsPage;
}
