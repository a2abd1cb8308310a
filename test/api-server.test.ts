// The API process against misbehaving clients and a separate admin interface: client aborts,
// malformed Host headers, slow clients, where the admin port listens, what /readyz tells.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { checkedFetch } from './api-contract.js';
import { createApiKey } from '../src/keys.js';
import { freePort } from '../src/stack/process.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';

/** Sends raw bytes and resolves with everything the server wrote back before closing (or the time limit). */
function rawExchange(port: number, host: string, write: (socket: net.Socket) => void, limitMs = 5_000): Promise<{ text: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = net.connect(port, host, () => write(socket));
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closedAfterMs: Infinity });
    }, limitMs);
    socket.on('data', (d) => (text += d.toString('utf8')));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closedAfterMs: Date.now() - started });
    });
    socket.on('error', (error) => {
      if ((error as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(error);
    });
  });
}

function startApi(args: string[], env: Record<string, string> = {}): { child: ChildProcess; output: () => string } {
  const child = spawn('node', ['bin/evalbox.js', 'api', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  return { child, output: () => output };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

describe('evalbox api server', () => {
  let database: TestDatabase;
  let api: ReturnType<typeof startApi>;
  let port: number;
  let adminPort: number;
  let key: string;

  beforeAll(async () => {
    database = await createTestDatabase({ max: 2 });
    key = (await createApiKey(database.db, 'server-app')).key;
    port = await freePort();
    adminPort = await freePort();
    api = startApi(['--port', String(port), '--admin-port', String(adminPort), '--database-url', database.url, '--host', '127.0.0.1'], {
      EVALBOX_API_HEADERS_TIMEOUT_MS: '1000',
      EVALBOX_API_BODY_IDLE_TIMEOUT_MS: '1000',
    });
    await waitFor(async () => (await fetch(`http://127.0.0.1:${adminPort}/healthz`)).ok, { what: 'the api to listen', timeoutMs: 30_000 });
  });
  afterAll(async () => {
    await stop(api.child);
    await database.drop();
  });

  it('a client that aborts an upload is not a database outage: no 503 in the metrics, no "database unavailable" warning', async () => {
    const body = JSON.stringify({ prompt: 'p', response: 'r'.repeat(5000) });
    for (let i = 0; i < 3; i++) {
      await rawExchange(port, '127.0.0.1', (socket) => {
        socket.write(
          `POST /v1/evaluations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 100)}`,
        );
        setTimeout(() => socket.destroy(), 200);
      });
    }
    // Each aborted request is counted once it has been handled: as a 499, never as a 503.
    const count = (text: string, status: string) =>
      Number(new RegExp(`http_request_duration_seconds_count\\{[^}]*route="/v1/evaluations"[^}]*status="${status}"[^}]*\\} (\\d+)`).exec(text)?.[1] ?? 0);
    const metrics = await waitFor(
      async () => {
        const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
        return count(text, '499') + count(text, '503') >= 3 && text;
      },
      { what: 'the three aborted requests to be counted', timeoutMs: 15_000 },
    );
    expect({ aborted: count(metrics, '499'), unavailable: count(metrics, '503') }).toEqual({ aborted: 3, unavailable: 0 });
    expect(api.output()).not.toMatch(/database unavailable/);
  });

  it('a malformed Host header gets a problem+json 400', async () => {
    const { text } = await rawExchange(port, '127.0.0.1', (socket) =>
      socket.write('GET /v1/dimensions HTTP/1.1\r\nHost: bad host/\\x\r\nConnection: close\r\n\r\n'),
    );
    expect(text).toMatch(/^HTTP\/1\.1 400/);
    expect(text.toLowerCase()).toContain('content-type: application/problem+json');
    expect(text).toContain('"status":400');
  });

  it('slow clients are cut off: headers that never finish, a body that stops arriving', async () => {
    const headers = await rawExchange(port, '127.0.0.1', (socket) => socket.write('GET /v1/dimensions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: '), 8_000);
    expect(headers.closedAfterMs).toBeLessThan(8_000);
    const body = await rawExchange(
      port,
      '127.0.0.1',
      (socket) =>
        socket.write(
          `POST /v1/evaluations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"prompt":`,
        ),
      8_000,
    );
    expect(body.closedAfterMs).toBeLessThan(8_000);
    process.stdout.write(`slow headers cut after ${headers.closedAfterMs} ms, idle body after ${body.closedAfterMs} ms\n`);
  });

  it('a request the server takes longer than the body-idle bound to answer (waiting on a row lock) gets its answer, not a closed connection', async () => {
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const created = await checkedFetch(`http://127.0.0.1:${port}/v1/evaluations`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ prompt: 'p', response: 'r' }),
    });
    const { evaluationId } = (await created.json()) as { evaluationId: string };
    // The whole request has arrived; the connection is quiet because the server is waiting on a
    // lock (2.5 s, more than the 1 s body-idle bound, less than the statement timeout).
    const blocker = await database.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('SELECT id FROM evaluations WHERE id = $1 FOR UPDATE', [evaluationId]);
      const sentAt = Date.now();
      const deletion = checkedFetch(`http://127.0.0.1:${port}/v1/evaluations/${evaluationId}`, { method: 'DELETE', headers });
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      await blocker.query('COMMIT');
      expect((await deletion).status).toBe(204);
      expect(Date.now() - sentAt).toBeGreaterThanOrEqual(2_500); // it did wait past the bound
    } finally {
      await blocker.query('ROLLBACK').catch(() => {});
      blocker.release();
    }
  });

  it('an idle results stream outlives the body-idle bound: its heartbeats come sooner', async () => {
    const controller = new AbortController();
    const stream = await checkedFetch(`http://127.0.0.1:${port}/v1/evaluations:stream`, {
      headers: { authorization: `Bearer ${key}` },
      signal: controller.signal,
    });
    expect(stream.status).toBe(200);
    const reader = stream.body?.getReader();
    let received = '';
    let ended = false;
    const reading = (async () => {
      for (;;) {
        const chunk = await reader?.read();
        if (!chunk || chunk.done) return void (ended = true);
        received += Buffer.from(chunk.value).toString('utf8');
      }
    })().catch(() => (ended = true));
    // Nothing to deliver for 3 s, three times the 1 s bound.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(ended).toBe(false);
    expect(received).toContain(': heartbeat');
    controller.abort();
    await reading;
  });

  it('the admin port binds to loopback by default, apart from the public host', async () => {
    const publicPort = await freePort();
    const admin = await freePort();
    const other = startApi(['--port', String(publicPort), '--admin-port', String(admin), '--database-url', database.url, '--host', '127.0.0.2']);
    try {
      await waitFor(async () => (await checkedFetch(`http://127.0.0.2:${publicPort}/v1/dimensions`)).ok, {
        what: 'the public port on 127.0.0.2',
        timeoutMs: 30_000,
      });
      expect((await fetch(`http://127.0.0.1:${admin}/healthz`)).status).toBe(200);
      await expect(fetch(`http://127.0.0.2:${admin}/healthz`)).rejects.toThrow();
    } finally {
      await stop(other.child);
    }
    const explicit = await freePort();
    const third = startApi(['--port', '0', '--admin-port', String(explicit), '--admin-host', '127.0.0.3', '--database-url', database.url]);
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.3:${explicit}/healthz`)).ok, { what: 'the admin port on 127.0.0.3', timeoutMs: 30_000 });
    } finally {
      await stop(third.child);
    }
  });

  it('/readyz names the failed dependency without echoing raw error text', async () => {
    const admin = await freePort();
    const deadPort = await freePort();
    const down = startApi(['--port', '0', '--admin-port', String(admin), '--database-url', `postgres://evalbox:secretpw@127.0.0.1:${deadPort}/evalbox`]);
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${admin}/healthz`)).ok, { what: 'the api to listen', timeoutMs: 30_000 });
      const res = await fetch(`http://127.0.0.1:${admin}/readyz`);
      expect(res.status).toBe(503);
      const text = await res.text();
      expect(JSON.parse(text)).toEqual({ status: 'not ready', failed: ['database'] });
      expect(text).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|secretpw|connect/);
    } finally {
      await stop(down.child);
    }
  });
});
