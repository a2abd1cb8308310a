// The results stream over a real socket: an HTTP client reads GET /v1/evaluations:stream,
// disconnects, resumes with Last-Event-ID and has every result exactly once, in commit order —
// including results decided while it was away and one whose transaction committed late. Idle
// streams send heartbeats, open streams are bounded per application, and stopping the process
// ends every stream cleanly.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Server } from 'node:http';
import { sql } from 'kysely';
import { createApiApp } from '../src/api/app.js';
import { createKeyResolver } from '../src/api/auth.js';
import { serveApi } from '../src/api/server.js';
import { loadConfig } from '../src/config.js';
import { createDimensionRegistry } from '../src/dimensions.js';
import { uuidv7 } from '../src/ids.js';
import { createApiKey } from '../src/keys.js';
import { silentLogger } from '../src/logging.js';
import { closeServer, createRegistry } from '../src/metrics.js';
import { evaluationScoredSchema } from '../src/schemas/events.js';
import { createAjv } from '../src/schemas/validator.js';
import { checkedFetch } from './api-contract.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';

interface SseEvent {
  id?: string;
  event?: string;
  data?: string;
  comment?: string;
}

/** An SSE client over fetch: parses events as they arrive; `close()` drops the connection. */
async function openStream(url: string, key: string, lastEventId?: string) {
  const controller = new AbortController();
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (lastEventId) headers['last-event-id'] = lastEventId;
  const response = await checkedFetch(url, { headers, signal: controller.signal });
  const events: SseEvent[] = [];
  let ended = false;
  const reading = (async () => {
    if (!response.body || response.status !== 200) return;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event: SseEvent = {};
          for (const line of block.split('\n')) {
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === '') event.comment = value;
            else if (field === 'id' || field === 'event' || field === 'data') event[field] = value;
          }
          events.push(event);
        }
      }
      ended = true;
    } catch {
      // aborted by close()
    }
  })();
  return {
    response,
    events,
    results: () => events.filter((e) => e.event === 'evaluation.scored'),
    ended: () => ended,
    async close() {
      controller.abort();
      await reading;
    },
    reading,
  };
}

describe('GET /v1/evaluations:stream (server-sent events)', () => {
  let database: TestDatabase;
  let server: Server;
  let base: string;
  let keyA: string;
  let keyB: string;
  const stopping = new AbortController();
  const validateScored = createAjv().compile(evaluationScoredSchema);

  beforeAll(async () => {
    database = await createTestDatabase({ max: 20 });
    const config = loadConfig({ DATABASE_URL: database.url, EVALBOX_API_PORT: '0', EVALBOX_HOST: '127.0.0.1' });
    const app = createApiApp({
      db: database.db,
      pool: database.pool,
      config,
      registry: createRegistry('api-stream-test'),
      logger: silentLogger(),
      dimensions: createDimensionRegistry(),
      keys: createKeyResolver(database.db),
      resultStreams: { pollMs: 50, heartbeatMs: 300, maxPerApplication: 2 },
      stopping: stopping.signal,
    });
    const served = await serveApi(app, config, silentLogger());
    server = served.server;
    base = `http://127.0.0.1:${served.port}`;
    keyA = (await createApiKey(database.db, 'app-a')).key;
    keyB = (await createApiKey(database.db, 'app-b')).key;
  });
  afterAll(async () => {
    stopping.abort();
    server.closeAllConnections();
    await closeServer(server);
    await database.drop();
  });

  const insert = async (applicationId = 'app-a') => {
    const id = uuidv7();
    await sql`INSERT INTO evaluations (id, application_id, prompt, response, dimensions) VALUES (${id}, ${applicationId}, 'p', 'r', '{toxicity}')`.execute(
      database.db,
    );
    return id;
  };
  // The scorer's final write: the score row and the status, in one transaction.
  const score = async (id: string, value = 0.1) =>
    database.db.transaction().execute(async (trx) => {
      await sql`
        INSERT INTO scores (evaluation_id, dimension, value, source, scorer_name, scorer_version, status)
        VALUES (${id}, 'toxicity', ${value}, 'HEURISTIC', 'toxicity', '1', 'COMPLETED')`.execute(trx);
      await sql`UPDATE evaluations SET status = 'SCORED', scored_at = now() WHERE id = ${id}`.execute(trx);
    });
  const resultIds = (events: SseEvent[]) => events.map((e) => (JSON.parse(e.data ?? '{}') as { evaluationId: string }).evaluationId);

  it('results stream: a client that disconnects and resumes with Last-Event-ID receives every result once, in commit order, including those decided while it was away and one committed late', async () => {
    const before = await insert();
    await score(before); // decided before the client connected: not part of its stream
    // "Before" means visible before: the stream starts below the cluster-wide snapshot horizon,
    // which another test file's open transaction can hold back past this result's commit.
    await waitFor(
      async () =>
        (
          await sql<{ visible: boolean }>`
            SELECT scored_xid < pg_snapshot_xmin(pg_current_snapshot()) AS visible FROM evaluations WHERE id = ${before}`.execute(database.db)
        ).rows[0]?.visible === true,
      { what: 'the earlier result to fall below the snapshot horizon', timeoutMs: 60_000 },
    );
    const ids = await Promise.all(Array.from({ length: 10 }, () => insert()));
    const other = await insert('app-b');

    const first = await openStream(`${base}/v1/evaluations:stream`, keyA);
    expect(first.response.status).toBe(200);
    expect(first.response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    for (const id of ids.slice(0, 3)) await score(id);
    await score(other);
    await waitFor(() => first.results().length >= 3, { what: 'three results on the stream' });
    // Drop the connection after the second result; the third may have arrived but is treated as lost.
    await first.close();
    const kept = first.results().slice(0, 2);
    expect(resultIds(kept)).toEqual(ids.slice(0, 2));
    for (const e of kept) expect(validateScored(JSON.parse(e.data ?? ''))).toBe(true);

    // While the client is away: a late transaction takes its xid first and commits last.
    const late = await database.pool.connect();
    try {
      await late.query('BEGIN');
      await late.query(
        `INSERT INTO scores (evaluation_id, dimension, value, source, scorer_name, scorer_version, status) VALUES ($1, 'toxicity', 0.5, 'HEURISTIC', 'toxicity', '1', 'COMPLETED')`,
        [ids[3]],
      );
      await late.query(`UPDATE evaluations SET status = 'SCORED', scored_at = now() WHERE id = $1`, [ids[3]]);
      for (const id of ids.slice(4, 7)) await score(id);

      const second = await openStream(`${base}/v1/evaluations:stream`, keyA, kept[1]?.id);
      expect(second.response.status).toBe(200);
      await waitFor(() => second.results().length >= 1, { what: 'the result missed during the disconnect' });
      // The late transaction holds the horizon: only the third result (committed before it) is out.
      expect(resultIds(second.results())).toEqual([ids[2]]);
      await late.query('COMMIT');
      for (const id of ids.slice(7, 10)) await score(id);
      await waitFor(() => second.results().length >= 8, { what: 'every result after the resume', timeoutMs: 15_000 });
      await second.close();
      const all = [...kept, ...second.results()];
      expect(resultIds(all)).toEqual(ids);
      expect(new Set(all.map((e) => e.id)).size).toBe(all.length);
      expect(resultIds(all)).not.toContain(other);
      expect(resultIds(all)).not.toContain(before);
    } finally {
      late.release();
    }
  });

  it('heartbeats: an idle stream sends a comment line every heartbeat interval', async () => {
    const stream = await openStream(`${base}/v1/evaluations:stream`, keyA);
    await waitFor(() => stream.events.filter((e) => e.comment === 'heartbeat').length >= 2, { what: 'two heartbeats' });
    expect(stream.results()).toEqual([]);
    await stream.close();
  });

  it('open streams are bounded per application: one more is a 429 with Retry-After, another application is not affected, and a closed stream frees its slot', async () => {
    const a1 = await openStream(`${base}/v1/evaluations:stream`, keyA);
    const a2 = await openStream(`${base}/v1/evaluations:stream`, keyA);
    const a3 = await openStream(`${base}/v1/evaluations:stream`, keyA);
    expect([a1.response.status, a2.response.status, a3.response.status]).toEqual([200, 200, 429]);
    expect(a3.response.headers.get('retry-after')).toBe('5');
    const b1 = await openStream(`${base}/v1/evaluations:stream`, keyB);
    expect(b1.response.status).toBe(200);
    await a1.close();
    const again = await waitFor(async () => {
      const s = await openStream(`${base}/v1/evaluations:stream`, keyA);
      if (s.response.status === 200) return s;
      await s.close();
      return undefined;
    });
    await Promise.all([a2.close(), again.close(), b1.close()]);
  });

  it('a Last-Event-ID this stream did not issue to the application is a 400', async () => {
    const b = await openStream(`${base}/v1/evaluations:stream`, keyB);
    const id = await insert('app-b');
    await score(id);
    await waitFor(() => b.results().length >= 1, { what: 'a result of app-b' });
    await b.close();
    for (const lastEventId of ['garbage', b.results()[0]?.id ?? '']) {
      const s = await openStream(`${base}/v1/evaluations:stream`, keyA, lastEventId);
      expect(s.response.status).toBe(400);
      await s.close();
    }
  });

  it('stopping the process ends every open stream cleanly: the client sees the end of the stream', async () => {
    const a = await openStream(`${base}/v1/evaluations:stream`, keyA);
    const b = await openStream(`${base}/v1/evaluations:stream`, keyB);
    await waitFor(() => a.events.length > 0 && b.events.length > 0, { what: 'both streams to start' });
    stopping.abort();
    await Promise.all([a.reading, b.reading]);
    expect([a.ended(), b.ended()]).toEqual([true, true]);
  });
});
