// The API as the real process an operator runs: composition root, HTTP, admin port, SIGTERM.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { createApiKey } from '../src/keys.js';
import { freePort } from '../src/stack/process.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';

describe('evalbox api process', () => {
  let database: TestDatabase;
  let child: ChildProcess;
  let port: number;
  let adminPort: number;
  let stderr = '';

  beforeAll(async () => {
    database = await createTestDatabase({ max: 2 });
    port = await freePort();
    adminPort = await freePort();
    child = spawn('node', ['bin/evalbox.js', 'api', '--port', String(port), '--admin-port', String(adminPort), '--database-url', database.url], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stderr?.on('data', (d) => (stderr += d));
    await waitFor(async () => (await fetch(`http://127.0.0.1:${adminPort}/healthz`)).ok, { what: 'the api to listen', timeoutMs: 30_000 });
  });
  afterAll(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await database.drop();
  });

  it('accepts a POST over HTTP with 202 and the row is visible in Postgres', async () => {
    const { key } = await createApiKey(database.db, 'proc-app');
    const res = await fetch(`http://127.0.0.1:${port}/v1/evaluations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Say hi', response: 'hi' }),
    });
    expect(res.status).toBe(202);
    const { evaluationId } = (await res.json()) as { evaluationId: string };
    const row = await database.db.selectFrom('evaluations').select(['application_id', 'status']).where('id', '=', evaluationId).executeTakeFirst();
    expect(row).toEqual({ application_id: 'proc-app', status: 'PENDING' });
  });

  it('serves /readyz (database checked) and /metrics on the admin port', async () => {
    const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
    expect(ready.status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    expect(metrics).toMatch(/http_request_duration_seconds_count\{[^}]*route="\/v1\/evaluations"[^}]*status="202"/);
  });

  it('guarantee 7: SIGTERM stops the process cleanly with exit code 0', async () => {
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/shutting down/);
  });
});
