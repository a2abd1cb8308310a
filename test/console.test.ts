// The web console without a browser: who may see what (operator token, application keys scoped as
// the REST API scopes them), the same-origin check on redrives, the parked-row redrive, and the
// `evalbox console` command's refusal to listen beyond loopback without a token.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { createConsoleApp, type ConsoleApp } from '../src/console/app.js';
import { createApiKey } from '../src/keys.js';
import { silentLogger } from '../src/logging.js';
import { uuidv7 } from '../src/ids.js';
import { createTestDatabase, kafkaBrokers, waitFor, type TestDatabase } from './helpers.js';

const TOKEN = 'console-unit-operator-token-abcdef';

describe('console access and actions', () => {
  let database: TestDatabase;
  let consoleApp: ConsoleApp;
  let keyA: string;
  let keyB: string;
  let evaluationOfA: string;

  beforeAll(async () => {
    database = await createTestDatabase();
    consoleApp = createConsoleApp({
      db: database.db,
      config: loadConfig({ DATABASE_URL: database.url, KAFKA_BROKERS: kafkaBrokers() }),
      logger: silentLogger(),
      operatorToken: TOKEN,
      scorerGroup: 'evalbox-scorer',
      scorerMetricsUrls: [],
      horizonWarnSeconds: 1,
    });
    keyA = (await createApiKey(database.db, 'app-a')).key;
    keyB = (await createApiKey(database.db, 'app-b')).key;
    evaluationOfA = uuidv7();
    await database.db
      .insertInto('evaluations')
      .values({ id: evaluationOfA, application_id: 'app-a', prompt: 'p', response: 'r', metadata: '{}', dimensions: ['toxicity'] })
      .execute();
  });
  afterAll(async () => {
    await consoleApp.close();
    await database.drop();
  });

  const get = (path: string, credential?: string) =>
    consoleApp.app.request(path, { headers: credential ? { authorization: `Bearer ${credential}` } : {}, redirect: 'manual' });

  it('without a credential every page sends the browser to sign in', async () => {
    for (const path of ['/pipeline', '/evaluations', `/evaluations/${evaluationOfA}`, '/dead-letters']) {
      const response = await get(path);
      expect(response.status).toBe(303);
      expect(response.headers.get('location')).toBe(`/login?next=${encodeURIComponent(path)}`);
    }
    expect((await get('/pipeline/live')).status).toBe(401);
  });

  it('a wrong token or a revoked key does not sign in', async () => {
    const wrong = await consoleApp.app.request('/login', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'http://localhost' },
      body: 'token=not-the-token&next=%2F',
    });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();
    const revoked = (await createApiKey(database.db, 'app-c')).key;
    await database.db.updateTable('api_keys').set({ revoked_at: new Date() }).where('application_id', '=', 'app-c').execute();
    expect((await get('/evaluations', revoked)).status).toBe(303);
  });

  it('an application key sees its own evaluations only, and no operator page', async () => {
    expect((await get(`/evaluations/${evaluationOfA}`, keyA)).status).toBe(200);
    const other = await get(`/evaluations/${evaluationOfA}`, keyB);
    expect(other.status).toBe(404);
    expect(await other.text()).not.toContain('app-a');
    const list = await (await get('/evaluations?application=app-a', keyB)).text();
    expect(list).not.toContain(evaluationOfA);
    for (const path of ['/pipeline', '/pipeline/live', '/dead-letters', '/dead-letters/records', '/source/backlog', '/parked/redrive?all=1']) {
      expect((await get(path, keyB)).status).toBe(403);
    }
    expect((await get('/pipeline', TOKEN)).status).toBe(200);
  });

  it('every page carries a Content-Security-Policy that allows only its own scripts', async () => {
    const response = await get(`/evaluations/${evaluationOfA}`, TOKEN);
    const csp = response.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(response.headers.get('x-frame-options')).toBe('DENY');
  });

  it('the pipeline names a backend that holds the snapshot horizon back', async () => {
    const holder = new pg.Client({ connectionString: database.url, application_name: 'console-test-horizon-holder' });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_current_xact_id()');
      // The banner shows once a transaction has held an xid for horizonWarnSeconds (1 s here).
      const page = await waitFor(
        async () => {
          const text = await (await get('/pipeline/live', TOKEN)).text();
          return text.includes('data-horizon-blocker') ? text : undefined;
        },
        { what: 'the horizon banner', timeoutMs: 15_000, intervalMs: 250 },
      );
      expect(page).toContain('The snapshot horizon is held back');
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
  });

  it('a redrive posted from another origin is refused', async () => {
    const response = await consoleApp.app.request('http://console.local/parked/redrive', {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/x-www-form-urlencoded', origin: 'http://evil.example' },
      body: 'all=1',
    });
    expect(response.status).toBe(403);
    expect(await database.db.selectFrom('outbox_parked').select('id').where('redriven_at', 'is not', null).execute()).toEqual([]);
  });

  it('a parked row is redriven back into the outbox with the same event id', async () => {
    const id = uuidv7();
    await database.db
      .insertInto('outbox_parked')
      .values({
        id,
        seq: '1',
        xid: '1',
        shard: 0,
        topic: 'llm-evaluation-events',
        key: 'app-a',
        type: 'evaluation.created',
        source: '/test',
        headers: '{}',
        payload: JSON.stringify({ evaluationId: evaluationOfA }),
        error_code: 'ERR_MSG_SIZE_TOO_LARGE',
        error_message: 'Broker: Message size too large',
        created_at: new Date(),
      })
      .execute();
    const confirm = await get(`/parked/redrive?id=${id}`, TOKEN);
    expect(confirm.status).toBe(200);
    expect(await confirm.text()).toContain('Message size too large');
    const done = await consoleApp.app.request('http://console.local/parked/redrive', {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/x-www-form-urlencoded', origin: 'http://console.local' },
      body: `id=${id}`,
      redirect: 'manual',
    });
    expect(done.status).toBe(303);
    expect(done.headers.get('location')).toContain('count=1');
    const requeued = await database.db.selectFrom('outbox').select('id').where('id', '=', id).execute();
    expect(requeued).toHaveLength(1);
    const page = await (await get('/dead-letters', TOKEN)).text();
    expect(page).toContain('redriven');
  });
});

describe('evalbox console command', () => {
  function run(args: string[], env: Record<string, string> = {}) {
    const child = spawn('node', ['bin/evalbox.js', 'console', ...args], {
      env: { ...process.env, EVALBOX_CONSOLE_TOKEN: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    return { child, exited, out: () => stdout, err: () => stderr };
  }

  it('refuses to listen beyond loopback without an operator token', async () => {
    const { exited, err } = run(['--host', '0.0.0.0', '--port', '0']);
    expect(await exited).toBe(1);
    expect(err()).toContain('EVALBOX_CONSOLE_TOKEN is required');
  });

  it('serves on loopback, prints its URL, and exits 0 on SIGTERM', async () => {
    const database = await createTestDatabase({ max: 1 });
    try {
      const { child, exited, out } = run(['--port', '0'], { DATABASE_URL: database.url });
      const url = await waitFor(() => /listening on (http:\/\/\S+)/.exec(out())?.[1], { what: 'the console URL', timeoutMs: 60_000 });
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      const page = await fetch(`${url}/evaluations`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('No evaluations yet.');
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      await database.drop();
    }
  });
});
