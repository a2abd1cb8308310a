// Prompt and response text never reach a log, on the error paths too: the API, the relay and the
// scorer run as real processes at debug level, and every failure path is driven with a marker in
// the prompt and the response: the judge answering garbage, the database refusing the score
// write and the judge-cache write (Postgres' error detail quotes the failing row), API validation
// errors, and the relay parking an oversize row. The marker must appear in no process's output;
// with EVALBOX_LOG_CONTENT=on the same paths do log it (so the check can see a leak).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { startFakeJudge, type FakeJudge } from '../src/fake-judge/server.js';
import { createApiKey } from '../src/keys.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';
import { startPlatform, type Platform } from './platform-processes.js';

const MARKER = `LEAKMARKER${randomUUID().replaceAll('-', '')}`;
const PARKED_TRACE_ID = randomUUID().replaceAll('-', '');
const PARKED_TRACEPARENT = `00-${PARKED_TRACE_ID}-00f067aa0ba902b7-01`;

describe('log content', () => {
  let database: TestDatabase;
  let judge: FakeJudge;

  beforeAll(async () => {
    database = await createTestDatabase({ max: 4 });
    judge = await startFakeJudge({ mode: 'malformed' });
    // The score write of this application's evaluations fails: the status update breaks a
    // constraint, and Postgres' error detail quotes the whole evaluations row (prompt, response).
    await sql`ALTER TABLE evaluations ADD CONSTRAINT refuse_scoring CHECK (status = 'PENDING' OR application_id <> 'refused-app') NOT VALID`.execute(
      database.db,
    );
    // Every judge-cache completion fails: the detail quotes the verdict (the judge's answer).
    await sql`ALTER TABLE judge_cache ADD CONSTRAINT refuse_verdicts CHECK (outcome IS NULL) NOT VALID`.execute(database.db);
  }, 60_000);
  afterAll(async () => {
    await judge?.close();
    await database?.drop();
  });

  async function post(platform: Platform, key: string, body: string): Promise<{ status: number; evaluationId?: string }> {
    const res = await fetch(`${platform.apiUrl}/v1/evaluations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body,
    });
    const answer = (await res.json()) as { evaluationId?: string };
    return { status: res.status, ...(answer.evaluationId ? { evaluationId: answer.evaluationId } : {}) };
  }

  const statusOf = async (id: string) =>
    (await sql<{ status: string }>`SELECT status FROM evaluations WHERE id = ${id}::uuid`.execute(database.db)).rows[0]?.status;

  async function driveFailurePaths(platform: Platform, run: string): Promise<void> {
    judge.control({ mode: 'malformed', scripted: [] });
    const judged = await createApiKey(database.db, 'judged-app');
    const refused = await createApiKey(database.db, 'refused-app');
    const text = { prompt: `What does ${MARKER} ${run} mean?`, response: `${MARKER} means nothing.`, context: [`${MARKER} context`] };

    // The judge answers garbage (twice: ERROR, dead-lettered).
    const garbage = await post(platform, judged.key, JSON.stringify({ ...text, dimensions: ['judge_relevance'] }));
    expect(garbage.status).toBe(202);
    // The score write is refused by the database.
    const refusedWrite = await post(platform, refused.key, JSON.stringify({ ...text, dimensions: ['pii_leak'] }));
    expect(refusedWrite.status).toBe(202);
    // API validation errors: a schema violation, invalid JSON (its parser quotes the text), an
    // unknown dimension.
    expect((await post(platform, judged.key, JSON.stringify({ prompt: MARKER, response: 42 }))).status).toBe(400);
    expect((await post(platform, judged.key, `{"prompt": "${MARKER}", "response": ${MARKER}}`)).status).toBe(400);
    expect((await post(platform, judged.key, JSON.stringify({ ...text, dimensions: [MARKER] }))).status).toBe(400);
    // An oversize outbox row the relay must park.
    await sql`
      INSERT INTO outbox (id, shard, topic, key, type, source, headers, payload, created_at)
      VALUES (${randomUUID()}::uuid, outbox_shard_of('judged-app'), ${platform.topics.events}, 'judged-app', 'evaluation.created', '/test',
              ${JSON.stringify({ traceparent: PARKED_TRACEPARENT })}::jsonb, jsonb_build_object('prompt', ${MARKER} || repeat('x', 1100000)), now())`.execute(
      database.db,
    );

    await waitFor(async () => (await statusOf(garbage.evaluationId as string)) === 'SCORING_FAILED', {
      what: 'the garbage verdict to fail',
      timeoutMs: 120_000,
    });
    // Then a verdict that quotes the answer, whose judge-cache write the database refuses.
    judge.control({ mode: 'ok', scripted: [{ contains: MARKER, reasoning: `The answer only repeats ${MARKER}.` }] });
    const quoted = await post(platform, judged.key, JSON.stringify({ ...text, prompt: `${text.prompt} again`, dimensions: ['judge_relevance'] }));
    expect(quoted.status).toBe(202);
    await waitFor(async () => (await statusOf(quoted.evaluationId as string)) === 'SCORED', { what: 'the quoted verdict to stand', timeoutMs: 120_000 });
    await waitFor(async () => (await statusOf(refusedWrite.evaluationId as string)) !== 'PENDING' || platform.output().includes('23514'), {
      what: 'the refused score write to be handled',
      timeoutMs: 120_000,
    });
    await waitFor(
      async () => Number((await sql<{ n: string }>`SELECT count(*) AS n FROM outbox_parked WHERE key = 'judged-app'`.execute(database.db)).rows[0]?.n) > 0,
      { what: 'the oversize row to be parked', timeoutMs: 60_000 },
    );
  }

  it('no prompt or response text in any log line on the failure paths (content logging off, the default)', async () => {
    const platform = await startPlatform(database, { EVALBOX_JUDGE_BASE_URL: judge.url, EVALBOX_JUDGE_MODEL: 'fake-judge-1', EVALBOX_LOG_LEVEL: 'debug' });
    try {
      await driveFailurePaths(platform, 'off');
      // Let the last lines (dead letters, retries of the refused write) be written.
      await waitFor(() => platform.output().includes('parked an outbox row'), { what: 'the park to be logged' });
      await new Promise((resolve) => setTimeout(resolve, 2_000));
    } finally {
      await platform.stop();
    }
    const output = platform.output();
    // The failure paths were taken and logged…
    expect(output).toContain('dead-lettered');
    expect(output).toContain('parked an outbox row');
    // The park is logged with the row's event id and trace id.
    const parkLine = output.split('\n').find((line) => line.includes('parked an outbox row'));
    expect(parkLine).toContain(`"traceId":"${PARKED_TRACE_ID}"`);
    expect(output).toContain('23514');
    expect(output).toContain('judge cache write failed');
    // …without the content.
    const leaks = output.split('\n').filter((line) => line.includes(MARKER));
    expect(leaks).toEqual([]);
  }, 240_000);

  it('EVALBOX_LOG_CONTENT=on lifts it: the same failure paths then log the content', async () => {
    const platform = await startPlatform(database, {
      EVALBOX_JUDGE_BASE_URL: judge.url,
      EVALBOX_JUDGE_MODEL: 'fake-judge-1',
      EVALBOX_LOG_LEVEL: 'debug',
      EVALBOX_LOG_CONTENT: 'on',
    });
    try {
      await driveFailurePaths(platform, 'on');
      await waitFor(() => platform.output().includes('judge cache write failed') && platform.output().includes(MARKER), {
        what: 'the content in the log',
        timeoutMs: 30_000,
      });
    } finally {
      await platform.stop();
    }
  }, 240_000);
});
