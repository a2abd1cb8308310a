// The API as the real process an operator runs: composition root, HTTP, admin port, SIGTERM.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { sql } from 'kysely';
import { checkedFetch } from './api-contract.js';
import { createApiKey } from '../src/keys.js';
import { freePort } from '../src/stack/process.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';
import { expectRowLockFree, gateInserts } from './paused-process.js';

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
    child = spawn(
      'node',
      ['bin/evalbox.js', 'api', '--port', String(port), '--admin-port', String(adminPort), '--database-url', database.url, '--body-limit', '4096'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        // Flags must win over these.
        env: { ...process.env, EVALBOX_API_PORT: '1', EVALBOX_ADMIN_PORT: '2', EVALBOX_LOG_LEVEL: 'debug' },
      },
    );
    child.stderr?.on('data', (d) => (stderr += d));
    await waitFor(async () => (await fetch(`http://127.0.0.1:${adminPort}/healthz`)).ok, { what: 'the api to listen', timeoutMs: 30_000 });
  });
  afterAll(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await database.drop();
  });

  it('accepts a POST over HTTP with 202 and the row is visible in Postgres', async () => {
    const { key } = await createApiKey(database.db, 'proc-app');
    const res = await checkedFetch(`http://127.0.0.1:${port}/v1/evaluations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Say hi', response: 'hi' }),
    });
    expect(res.status).toBe(202);
    const { evaluationId } = (await res.json()) as { evaluationId: string };
    const row = await database.db.selectFrom('evaluations').select(['application_id', 'status']).where('id', '=', evaluationId).executeTakeFirst();
    expect(row).toEqual({ application_id: 'proc-app', status: 'PENDING' });
  });

  it('reads bodies from the socket within the limit: 413 declared or streamed, 415, 400 malformed, BOM tolerated', async () => {
    const { key } = await createApiKey(database.db, 'limits-app');
    const post = (body: string | ReadableStream<Uint8Array>, headers: Record<string, string> = {}, extra: RequestInit = {}) =>
      checkedFetch(`http://127.0.0.1:${port}/v1/evaluations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
        body,
        ...extra,
      });
    const big = JSON.stringify({ prompt: 'p', response: 'x'.repeat(5000) });
    const declared = await post(big);
    expect({ status: declared.status, type: declared.headers.get('content-type') }).toEqual({ status: 413, type: 'application/problem+json' });
    // Without Content-Length (chunked), the limit is enforced while reading.
    const chunks = [big.slice(0, 2000), big.slice(2000)];
    const stream = new ReadableStream({
      pull: (controller) => void (chunks.length ? controller.enqueue(new TextEncoder().encode(chunks.shift())) : controller.close()),
    });
    const streamed = await post(stream, {}, { duplex: 'half' });
    expect(streamed.status).toBe(413);
    expect((await post('{"prompt":', {})).status).toBe(400);
    expect((await post('{}', { 'content-type': 'text/plain' })).status).toBe(415);
    const bom = await post(`\ufeff${JSON.stringify({ prompt: 'p', response: 'r' })}`, { 'idempotency-key': 'bom-1' });
    expect(bom.status).toBe(202);
  });

  it('serves /readyz (database checked) and /metrics on the admin port', async () => {
    const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
    expect(ready.status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    expect(metrics).toMatch(/http_request_duration_seconds_count\{[^}]*route="\/v1\/evaluations"[^}]*status="202"/);
  });

  it('logs ids, never prompt or response text', async () => {
    const { key } = await createApiKey(database.db, 'log-app');
    const res = await checkedFetch(`http://127.0.0.1:${port}/v1/evaluations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'secret-prompt-text', response: 'secret-response-text' }),
    });
    const { evaluationId } = (await res.json()) as { evaluationId: string };
    await waitFor(() => stderr.includes(evaluationId), { what: 'the accepted evaluation to be logged' });
    expect(stderr).not.toMatch(/secret-(prompt|response)-text/);
  });

  it('every response carries a request id that the logs name too; authentication failures are logged without the key', async () => {
    const { key } = await createApiKey(database.db, 'rid-app');
    const wrong = `${key.slice(0, -4)}AAAA`;
    const res = await checkedFetch(`http://127.0.0.1:${port}/v1/evaluations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${wrong}`, 'content-type': 'application/json', 'x-request-id': 'client-rid-42' },
      body: '{}',
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('x-request-id')).toBe('client-rid-42');
    expect(((await res.json()) as { requestId: string }).requestId).toBe('client-rid-42');
    const line = await waitFor(() => stderr.split('\n').find((l) => l.includes('client-rid-42')));
    expect(JSON.parse(line)).toMatchObject({ requestId: 'client-rid-42', msg: 'authentication failed', reason: 'unknown or revoked' });
    expect(stderr).not.toContain(wrong);
    expect(stderr).not.toContain(wrong.slice(4, 20));
    // A made-up request id that is not tame is replaced.
    const other = await checkedFetch(`http://127.0.0.1:${port}/v1/dimensions`, { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(other.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('readyz checks the database: 503 while Postgres is unreachable, healthz still 200', async () => {
    const downAdmin = await freePort();
    const down = spawn(
      'node',
      ['bin/evalbox.js', 'api', '--port', '0', '--admin-port', String(downAdmin), '--database-url', `postgres://evalbox@127.0.0.1:${await freePort()}/evalbox`],
      { stdio: 'ignore' },
    );
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${downAdmin}/healthz`)).ok, { what: 'the second api to listen', timeoutMs: 30_000 });
      expect((await fetch(`http://127.0.0.1:${downAdmin}/readyz`)).status).toBe(503);
    } finally {
      const exited = new Promise((resolve) => down.once('exit', resolve));
      down.kill('SIGTERM');
      await exited;
    }
  });

  it('an API paused (SIGSTOP) inside a transaction is cut off by the database: no row lock or snapshot horizon outlives the bound; resumed, its request gets a retryable 503 and a retry succeeds', async () => {
    const pausedPort = await freePort();
    const paused = spawn('node', ['bin/evalbox.js', 'api', '--port', String(pausedPort), '--admin-port', '0', '--database-url', database.url], {
      stdio: 'ignore',
    });
    const base = `http://127.0.0.1:${pausedPort}`;
    // The deletion's second statement waits at a gate: the API is paused inside its transaction
    // (evaluation row deleted and locked, xid taken), and the statement ends while it cannot send its COMMIT.
    const gate = await gateInserts(database, 'evaluation_deletions', 7302);
    try {
      await waitFor(async () => (await fetch(`${base}/v1/dimensions`).catch(() => undefined))?.ok, { what: 'the second api to listen', timeoutMs: 30_000 });
      const { key } = await createApiKey(database.db, 'paused-app');
      const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
      const created = await checkedFetch(`${base}/v1/evaluations`, { method: 'POST', headers, body: JSON.stringify({ prompt: 'p', response: 'r' }) });
      const { evaluationId } = (await created.json()) as { evaluationId: string };
      const deletion = checkedFetch(`${base}/v1/evaluations/${evaluationId}`, { method: 'DELETE', headers });
      const session = await gate.pauseInside(paused, 'evalbox-api');
      // The transaction stays open, idle, until the database ends the session (the API's default bound, 10 s).
      const endedAfter = await gate.waitUntilLetGo(session, 'the paused api to let go of its session and the horizon');
      process.stdout.write(`api paused inside its transaction: session ended ${endedAfter} ms after the pause\n`);
      await expectRowLockFree(database, 'evaluations', evaluationId);
      paused.kill('SIGCONT');
      const first = await deletion;
      expect(first.status).toBe(503);
      expect(first.headers.get('retry-after')).not.toBeNull();
      const retried = await checkedFetch(`${base}/v1/evaluations/${evaluationId}`, { method: 'DELETE', headers });
      expect(retried.status).toBe(204);
      expect(await database.db.selectFrom('evaluations').select('id').where('id', '=', evaluationId).executeTakeFirst()).toBeUndefined();
    } finally {
      paused.kill('SIGCONT');
      paused.kill('SIGKILL');
      await gate.remove();
    }
  });

  it('guarantee 7: SIGTERM stops intake, finishes the in-flight request, ends the open results streams cleanly, closes the pool and exits 0', async () => {
    const { key } = await createApiKey(database.db, 'drain-app');
    // An open results stream must end at once, cleanly, rather than hold the exit for the grace period.
    const stream = await checkedFetch(`http://127.0.0.1:${port}/v1/evaluations:stream`, { headers: { authorization: `Bearer ${key}` } });
    expect(stream.status).toBe(200);
    const reader = stream.body?.getReader();
    const streamEnded = (async () => {
      for (;;) if ((await reader?.read())?.done ?? true) return 'ended';
    })().catch((error: Error) => `failed: ${error.message}`);
    // Hold the request in flight: an uncommitted row with the same idempotency key makes the
    // API's INSERT … ON CONFLICT wait for this transaction.
    const blocker = await database.pool.connect();
    await blocker.query('BEGIN');
    await blocker.query(
      `INSERT INTO evaluations (id, application_id, prompt, response, dimensions, idempotency_key) VALUES ('00000000-0000-7000-8000-0000000000aa', 'drain-app', 'p', 'r', '{toxicity}', 'drain-1')`,
    );
    const inflight = checkedFetch(`http://127.0.0.1:${port}/v1/evaluations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': 'drain-1' },
      body: JSON.stringify({ prompt: 'Say hi', response: 'hi' }),
    });
    await waitFor(
      async () => {
        const { rows } = await database.pool.query(
          `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'evalbox-api' AND wait_event_type = 'Lock'`,
        );
        return rows.length === 1;
      },
      { what: 'the API request to wait on the row lock' },
    );

    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    await waitFor(() => stderr.includes('shutting down'), { what: 'the shutdown to begin' });
    // Intake has stopped: a new connection is refused while the old request is still running.
    await waitFor(
      async () =>
        checkedFetch(`http://127.0.0.1:${port}/v1/dimensions`).then(
          () => false,
          () => true,
        ),
      { what: 'the port to stop accepting' },
    );
    expect(child.exitCode).toBeNull();

    await blocker.query('ROLLBACK');
    blocker.release();
    const t0 = Date.now();
    const res = await inflight;
    expect(res.status).toBe(202);
    const { evaluationId } = (await res.json()) as { evaluationId: string };
    expect(await exited).toBe(0);
    // Promptly: the drained keep-alive connection does not hold the exit until its idle timeout.
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(await streamEnded).toBe('ended');
    expect(
      await database.db
        .selectFrom('outbox')
        .select('id')
        .where(sql<boolean>`payload->>'evaluationId' = ${evaluationId}`)
        .execute(),
    ).toHaveLength(1);
    // The pool was closed: no connection of the API is left.
    const { rows } = await database.pool.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'evalbox-api'`,
    );
    expect(rows[0]).toEqual({ n: 0 });
  });
});
