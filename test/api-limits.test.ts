// Quotas and fairness between tenants: per-application rate and concurrency limits (429 with
// Retry-After and RateLimit headers), a fair share of the pool per application, statement_timeout.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createApiApp } from '../src/api/app.js';
import { createKeyResolver } from '../src/api/auth.js';
import { loadConfig } from '../src/config.js';
import { createDb } from '../src/db/index.js';
import { createDimensionRegistry } from '../src/dimensions.js';
import { silentLogger } from '../src/logging.js';
import { createRegistry } from '../src/metrics.js';
import { checkResponses } from './api-contract.js';
import { createApiFixture, validEvaluation, type ApiFixture } from './api-helpers.js';
import { waitFor } from './helpers.js';

describe('API quotas and fairness', () => {
  let f: ApiFixture;
  beforeAll(async () => {
    f = await createApiFixture();
  });
  afterAll(async () => f.database.drop());

  /** Holds a row lock on (application, idempotency key): an API insert with that key waits on it. */
  // Holds the key both as an Idempotency-Key and as an externalId, so requests using either wait.
  async function holdIdempotencyKey(applicationId: string, key: string) {
    const client = await f.database.pool.connect();
    await client.query('BEGIN');
    await client.query(
      `INSERT INTO evaluations (id, application_id, prompt, response, dimensions, idempotency_key, external_id) VALUES (gen_random_uuid(), $1, 'p', 'r', '{toxicity}', $2, $2)`,
      [applicationId, key],
    );
    return async () => {
      await client.query('ROLLBACK');
      client.release();
    };
  }

  const appWith = (env: Record<string, string>) =>
    checkResponses(
      createApiApp({
        db: f.database.db,
        pool: f.database.pool,
        config: loadConfig({ ...env, DATABASE_URL: f.database.url }),
        registry: createRegistry('api-limits'),
        logger: silentLogger(),
        dimensions: createDimensionRegistry(),
        keys: createKeyResolver(f.database.db),
      }),
    );
  const post = async (app: ReturnType<typeof createApiApp>, key: string, body: unknown, headers: Record<string, string> = {}) =>
    app.request(body && typeof body === 'object' && 'items' in body ? '/v1/evaluations:batch' : '/v1/evaluations', {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });

  it('an application over its rate gets 429 with Retry-After and the IETF RateLimit headers; another application is unaffected', async () => {
    const app = appWith({ EVALBOX_API_RATE_PER_SECOND: '2', EVALBOX_API_RATE_BURST: '5' });
    const statuses: number[] = [];
    let limited: Response | undefined;
    for (let i = 0; i < 8; i++) {
      const res = await post(app, f.keyA, validEvaluation());
      statuses.push(res.status);
      if (res.status === 429) limited = res;
      else expect(res.headers.get('ratelimit')).toMatch(/^"app";r=\d+;t=\d+$/);
    }
    expect(statuses.slice(0, 5)).toEqual([202, 202, 202, 202, 202]);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(2);
    expect(limited?.headers.get('content-type')).toBe('application/problem+json');
    expect(Number(limited?.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(limited?.headers.get('ratelimit-policy')).toBe('"app";q=5;w=3');
    expect(limited?.headers.get('ratelimit')).toMatch(/^"app";r=0;t=[1-9]\d*$/);
    // The other tenant has its own bucket.
    expect((await post(app, f.keyB, validEvaluation())).status).toBe(202);
    // A batch costs one unit per item: more items than the bucket holds is a 429 for the whole batch.
    const batch = await post(app, f.keyB, { items: Array.from({ length: 6 }, () => validEvaluation()) });
    expect(batch.status).toBe(429);
  });

  it('an application over its concurrency limit gets 429 at once, while its requests in flight finish', async () => {
    // Written alone, each request waits on the lock in its own statement: both are seen waiting.
    const app = appWith({ EVALBOX_API_CONCURRENCY_PER_APP: '2', EVALBOX_API_GROUP_COMMIT: 'off' });
    const release = await holdIdempotencyKey('app-a', 'conc-1');
    try {
      const inflight = [
        post(app, f.keyA, validEvaluation(), { 'idempotency-key': 'conc-1' }),
        post(app, f.keyA, validEvaluation(), { 'idempotency-key': 'conc-1' }),
      ];
      await waitFor(
        async () => {
          const { rows } = await f.database.pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
          );
          return (rows[0]?.n ?? 0) >= 2;
        },
        { what: 'both requests to wait on the row lock' },
      );
      const third = await post(app, f.keyA, validEvaluation());
      expect(third.status).toBe(429);
      expect(third.headers.get('retry-after')).toBe('1');
      expect((await post(app, f.keyB, validEvaluation())).status).toBe(202);
      await release();
      expect((await Promise.all(inflight)).map((r) => r.status)).toEqual([202, 202]);
    } catch (error) {
      await release().catch(() => {});
      throw error;
    }
  });

  it('one tenant’s batch flood cannot push another tenant into 503s: each application gets a fair share of the pool', async () => {
    // A pool of 6 connections that fail after 3 s of waiting, as a loaded API's would.
    const handle = createDb(f.database.url, { max: 6, connectionTimeoutMs: 3_000 });
    const app = checkResponses(
      createApiApp({
        db: handle.db,
        pool: handle.pool,
        config: loadConfig({ DATABASE_URL: f.database.url, EVALBOX_API_POOL_SIZE: '6' }),
        registry: createRegistry('api-fair'),
        logger: silentLogger(),
        dimensions: createDimensionRegistry(),
        keys: createKeyResolver(f.database.db),
      }),
    );
    const release = await holdIdempotencyKey('app-a', 'flood');
    try {
      // Application A floods: batches whose items all wait on a lock, holding what they get.
      const flood = Array.from({ length: 3 }, () => post(app, f.keyA, { items: Array.from({ length: 20 }, () => validEvaluation({ externalId: 'flood' })) }));
      await waitFor(
        async () => {
          const { rows } = await f.database.pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
          );
          return (rows[0]?.n ?? 0) >= 1;
        },
        { what: 'the flood to hold connections' },
      );
      // Application B, meanwhile: every request answered, none a 503.
      const started = Date.now();
      const b = await Promise.all(Array.from({ length: 10 }, () => post(app, f.keyB, validEvaluation())));
      expect(b.map((r) => r.status)).toEqual(Array(10).fill(202));
      process.stdout.write(`tenant B: 10 requests during the flood in ${Date.now() - started} ms\n`);
      await release();
      const results = await Promise.all(flood);
      expect(results.map((r) => r.status)).toEqual([207, 207, 207]);
    } finally {
      await release().catch(() => {});
      await handle.close();
    }
  });

  it('a statement that outlives statement_timeout is cancelled: a 503, not a request that hangs', async () => {
    const handle = createDb(f.database.url, { max: 2, statementTimeoutMs: 300 });
    const app = checkResponses(
      createApiApp({
        db: handle.db,
        pool: handle.pool,
        config: loadConfig({ DATABASE_URL: f.database.url }),
        registry: createRegistry('api-timeout'),
        logger: silentLogger(),
        dimensions: createDimensionRegistry(),
        keys: createKeyResolver(f.database.db),
      }),
    );
    const release = await holdIdempotencyKey('app-a', 'slow-1');
    try {
      const res = await Promise.race([
        post(app, f.keyA, validEvaluation(), { 'idempotency-key': 'slow-1' }),
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 5_000)),
      ]);
      expect(res?.status).toBe(503);
      expect(res?.headers.get('retry-after')).toBe('1');
    } finally {
      await release();
      await handle.close();
    }
  });
});
