// Guarantee: nothing a request can contain crashes the API, produces a 5xx, leaks another
// tenant's data, or gets an error that is not a bounded problem+json. Generated bad requests
// (fast-check, fixed seed) against the real API process over raw HTTP. `npm run fuzz` runs the
// same property with 10,000 cases (EVALBOX_FUZZ_RUNS, EVALBOX_FUZZ_SEED).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { spawn, type ChildProcess } from 'node:child_process';
import { createApiKey, revokeApiKey } from '../src/keys.js';
import { freePort } from '../src/stack/process.js';
import { checkAnswer, describeCase, requests, type FuzzTargets } from './fuzz/cases.js';
import { sendRaw } from './fuzz/raw-http.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';

const RUNS = Number(process.env.EVALBOX_FUZZ_RUNS ?? 300);
const SEED = Number(process.env.EVALBOX_FUZZ_SEED ?? 20261130);

describe('API fuzz', () => {
  let database: TestDatabase;
  let child: ChildProcess;
  let port: number;
  let stderr = '';
  let targets: FuzzTargets;

  beforeAll(async () => {
    database = await createTestDatabase({ max: 2 });
    port = await freePort();
    const adminPort = await freePort();
    child = spawn('node', ['bin/evalbox.js', 'api', '--port', String(port), '--admin-port', String(adminPort), '--database-url', database.url], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, EVALBOX_LOG_LEVEL: 'error' },
    });
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-20_000)));
    await waitFor(async () => (await fetch(`http://127.0.0.1:${adminPort}/healthz`)).ok, { what: 'the api to listen', timeoutMs: 60_000 });

    const { key } = await createApiKey(database.db, 'fuzz-tenant-a');
    const revoked = await createApiKey(database.db, 'fuzz-tenant-a');
    await revokeApiKey(database.db, revoked.id);
    const other = await createApiKey(database.db, 'fuzz-tenant-b');
    const marker = 'tenant-b-secret-7f3a9c';
    const post = (n: number) =>
      fetch(`http://127.0.0.1:${port}/v1/evaluations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${other.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: `${marker} ${n}`, response: marker }),
      }).then(async (r) => (await r.json()) as { evaluationId: string });
    const { evaluationId } = await post(1);
    await post(2);
    const page = (await (await fetch(`http://127.0.0.1:${port}/v1/evaluations?limit=1`, { headers: { authorization: `Bearer ${other.key}` } })).json()) as {
      nextCursor?: string;
      links?: { next?: string };
    };
    const cursor = page.nextCursor ?? new URL(page.links?.next ?? 'http://x/?cursor=none', 'http://x').searchParams.get('cursor') ?? 'none';
    targets = { key, revokedKey: revoked.key, otherTenantId: evaluationId, otherTenantCursor: cursor, otherTenantMarker: marker };
  });
  afterAll(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await database.drop();
  });

  it(`answers ${RUNS} generated bad requests with no 5xx, no crash, no other tenant's data, and bounded problem+json errors (seed ${SEED})`, async () => {
    // What the API answered, for the record (`npm run fuzz` prints it).
    const statuses = new Map<string, number>();
    const started = Date.now();
    const details = await fc.check(
      fc.asyncProperty(requests(targets), async (request) => {
        const response = await sendRaw(port, request);
        const status = response ? String(response.status) : 'no answer';
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        const problem = checkAnswer(request, response, targets);
        if (problem) throw new Error(problem);
        if (child.exitCode !== null) throw new Error(`the api exited (${child.exitCode}): ${stderr.slice(-2000)}`);
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    );
    const seen = [...statuses].sort(([a], [b]) => a.localeCompare(b)).map(([status, n]) => `${status}: ${n}`);
    process.stderr.write(`fuzz: ${details.numRuns} cases in ${((Date.now() - started) / 1000).toFixed(0)} s; statuses ${seen.join(', ')}\n`);
    if (details.failed) {
      const [request] = details.counterexample ?? [];
      throw new Error(
        `${(details.errorInstance as Error | undefined)?.message ?? 'failed'} after ${details.numRuns} cases (seed ${SEED}, path ${details.counterexamplePath}): ${request ? describeCase(request) : ''}`,
      );
    }
    // Still serving after the run.
    const ok = await fetch(`http://127.0.0.1:${port}/v1/evaluations?limit=1`, { headers: { authorization: `Bearer ${targets.key}` } });
    expect(ok.status).toBe(200);
    expect(child.exitCode).toBeNull();
  }, 1_800_000);
});
