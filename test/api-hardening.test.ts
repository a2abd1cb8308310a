// Hardening of the API in front of untrusted tenants: bounded error responses, a key cache that
// cannot be abused, strict parsing of query parameters and numbers.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createKeyResolver } from '../src/api/auth.js';
import { createDb } from '../src/db/index.js';
import { freePort } from '../src/stack/process.js';
import { createApiFixture, validEvaluation, type ApiFixture } from './api-helpers.js';

interface ProblemBody {
  status: number;
  detail: string;
  errors?: { pointer: string; detail: string }[];
}

describe('API hardening', () => {
  let f: ApiFixture;
  beforeAll(async () => {
    f = await createApiFixture();
  });
  afterAll(async () => f.database.drop());

  it('a small request cannot produce a huge error: validation errors and the response size are capped', async () => {
    // About 0.5 MB of properties that are not allowed: one error each without a cap.
    const body = `{"prompt":"p","response":"r",${Array.from({ length: 45_000 }, (_, i) => `"x${i}":0`).join(',')}}`;
    expect(body.length).toBeGreaterThan(400_000);
    const started = performance.now();
    const res = await f.post('/v1/evaluations', body);
    const elapsed = performance.now() - started;
    const text = await res.text();
    expect(res.status).toBe(400);
    const problem = JSON.parse(text) as ProblemBody & { errorsTruncated?: boolean };
    expect(problem.errors?.length).toBeLessThanOrEqual(20);
    expect(problem.errors?.[0]).toEqual({ pointer: '/x0', detail: 'is not an allowed property' });
    expect(problem.errorsTruncated).toBe(true);
    expect(text.length).toBeLessThan(16 * 1024);
    // Printed, not asserted: timings are for benchmarks.
    process.stdout.write(`capped 400 for a ${body.length}-byte body: ${text.length} bytes in ${elapsed.toFixed(0)} ms\n`);

    // Long property names are shortened in pointers, so the cap also bounds bytes.
    const longKeys = `{"prompt":"p","response":"r",${Array.from({ length: 30 }, (_, i) => `"${String(i).padStart(10_000, 'k')}":0`).join(',')}}`;
    const long = await f.post('/v1/evaluations', longKeys);
    expect(long.status).toBe(400);
    expect((await long.text()).length).toBeLessThan(16 * 1024);

    // A batch of many bad items stays bounded too.
    const items = Array.from({ length: 100 }, () => Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`y${i}`, 0])));
    const batch = await f.post('/v1/evaluations:batch', { items });
    expect(batch.status).toBe(207);
    expect((await batch.text()).length).toBeLessThan(256 * 1024);
  });

  it('the key cache rejects tokens that do not match the key format before any database lookup', async () => {
    // A resolver over a database where nothing listens: any lookup would throw.
    const down = createDb(`postgres://evalbox@127.0.0.1:${await freePort()}/evalbox`, { max: 1 });
    try {
      const keys = createKeyResolver(down.db);
      for (const token of [`ebx_${'a'.repeat(16_000)}`, 'ebx_short', 'not-an-evalbox-key', `ebx_${'!'.repeat(32)}`]) {
        await expect(keys.resolve(token)).resolves.toBeUndefined();
      }
    } finally {
      await down.close();
    }
  });

  it('the key cache is keyed by hash and bounded by bytes: a flood of unknown keys cannot push out a real key', async () => {
    const handle = createDb(f.database.url, { max: 4 });
    // maxEntries is what the cache was bounded by before bytes; a small one makes the flood short.
    const keys = createKeyResolver(handle.db, { ttlMs: 60_000, maxBytes: 16 * 1024, maxEntries: 500 } as Parameters<typeof createKeyResolver>[1]);
    try {
      expect(await keys.resolve(f.keyA)).toBe('app-a');
      const unknown = (i: number) => `ebx_${i.toString(36).padStart(32, 'z')}`;
      for (let i = 0; i < 1_000; i += 200) {
        await Promise.all(Array.from({ length: 200 }, (_, j) => keys.resolve(unknown(i + j))));
      }
      expect(keys.sizeBytes()).toBeLessThanOrEqual(16 * 1024);
    } finally {
      await handle.close();
    }
    // The database is gone for this resolver: keyA must still come from the cache.
    expect(await keys.resolve(f.keyA)).toBe('app-a');
  });

  it('lenient input is refused: metadata numbers beyond the safe range, a non-RFC 3339 since, a limit that is not digits', async () => {
    for (const raw of ['9007199254740993', '1e400', '-12345678901234567890']) {
      const res = await f.post('/v1/evaluations', `{"prompt":"p","response":"r","metadata":{"n":${raw}}}`);
      expect(res.status).toBe(400);
      expect(((await res.json()) as ProblemBody).errors?.map((e) => e.pointer)).toContain('/metadata/n');
    }
    expect((await f.post('/v1/evaluations', validEvaluation({ metadata: { n: 9007199254740991, x: 0.1 } }))).status).toBe(202);
    for (const bad of ['since=2024', 'since=Tue%2C%201%20Oct%202024', 'since=1', 'since=2024-01-01', 'limit=1e2', 'limit=0x10', 'limit=%2010', 'limit=10.0']) {
      const res = await f.get(`/v1/evaluations?${bad}`);
      expect({ bad, status: res.status }).toEqual({ bad, status: 400 });
    }
    for (const good of ['since=2024-01-01T00:00:00Z', 'since=2024-01-01T00:00:00.5%2B02:00', 'limit=10']) {
      const res = await f.get(`/v1/evaluations?${good}`);
      expect({ good, status: res.status }).toEqual({ good, status: 200 });
    }
  });
});
