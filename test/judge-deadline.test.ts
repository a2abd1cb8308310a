// The judge call's deadline against a blocked event loop, with the fake judge in a process of its
// own (so only the caller stalls) over real HTTP and the cache on the real Postgres. A scorer's
// event loop can be blocked for seconds (a synchronous call into a native library, a long garbage
// collection, a starved CPU); an answer that arrives meanwhile waits in the socket. When the loop
// resumes, timers run before sockets are read: a deadline that aborts the call at once throws
// away an answer the provider gave in time and was paid for, gives the claim back, and the next
// delivery of that content pays again.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { sql } from 'kysely';
import { request } from 'undici';
import { loadJudgeConfig, type JudgeConfig } from '../consumers/judge/config.js';
import { createJudge } from '../consumers/judge/judge.js';
import type { FakeJudgeRequestRecord, FakeJudgeStats } from '../src/fake-judge/server.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';

const sample = {
  prompt: 'How long do refunds take?',
  response: 'Refunds reach the original payment method within 14 days of receipt.',
  context: ['Refunds go to the original payment method within 14 days.'],
};

/** How long the judge holds the request before it answers, and the client's deadline. */
const HOLD_MS = 1000;
const TIMEOUT_MS = 2500;

function configFor(url: string): JudgeConfig {
  const config = loadJudgeConfig({ EVALBOX_JUDGE_CONFIG: '/judge.json' }, () =>
    JSON.stringify({ endpoints: [{ name: 'fake', baseUrl: url, model: 'fake-judge-1', timeoutMs: TIMEOUT_MS, maxConcurrency: 4 }] }),
  );
  if (!config) throw new Error('no config');
  return config;
}

/** Blocks this thread (timers, sockets, everything) for `ms`, as a synchronous native call would. */
function blockEventLoop(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe('judge deadline and a blocked event loop', () => {
  let database: TestDatabase;
  let judgeProcess: ChildProcess;
  let url = '';
  const get = async <T>(path: string): Promise<T> => (await (await request(`${url}${path}`)).body.json()) as T;

  beforeAll(async () => {
    database = await createTestDatabase();
    judgeProcess = spawn('node', ['bin/evalbox.js', 'fake-judge', '--port', '0', '--mode', 'hang', '--hang-ms', String(HOLD_MS)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    url = await new Promise<string>((resolve, reject) => {
      let out = '';
      judgeProcess.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const found = /listening on (http:\/\/\S+)/.exec(out);
        if (found) resolve(found[1] as string);
      });
      judgeProcess.once('exit', (code) => reject(new Error(`fake judge exited with ${code}`)));
    });
  });
  afterAll(async () => {
    if (judgeProcess.exitCode === null) {
      const exited = new Promise((resolve) => judgeProcess.once('exit', resolve));
      judgeProcess.kill('SIGTERM');
      await exited;
    }
    await database.drop();
  });

  it('guarantee 4: an answer that arrived in time while the event loop was blocked past the deadline is kept and cached, not paid for again', async () => {
    const judge = createJudge({ config: configFor(url), db: database.db });
    try {
      const started = Date.now();
      const first = judge.score('judge_relevance', sample).then(
        (outcome) => ({ outcome }),
        (error: unknown) => ({ error }),
      );
      // The judge holds the request; block the loop before it answers, until past the deadline.
      await waitFor(async () => (await get<FakeJudgeStats>('/_stats')).inFlight === 1, { timeoutMs: 10_000, intervalMs: 5 });
      const blockedAt = Date.now();
      blockEventLoop(started + TIMEOUT_MS + 1000 - blockedAt);
      const unblockedAt = Date.now();
      const result = await first;

      // What the provider did: one paid answer, given while this client was connected and blocked.
      const [answer, ...others] = await get<FakeJudgeRequestRecord[]>('/_requests');
      expect(others).toHaveLength(0);
      expect(answer).toMatchObject({ outcome: 'ok', clientGone: false });
      expect(answer?.endedAt).toBeGreaterThan(blockedAt);
      expect(answer?.endedAt).toBeLessThan(unblockedAt);
      // The call was sent before the judge received it: its deadline had passed when the loop resumed.
      expect(unblockedAt).toBeGreaterThan((answer?.startedAt ?? Infinity) + TIMEOUT_MS);

      // The caller got that verdict, and it is in the cache: the next delivery does not pay again.
      const again = await judge.score('judge_relevance', sample);
      const { rows } = await sql<{ state: string }>`SELECT state FROM judge_cache`.execute(database.db);
      expect({
        first: 'outcome' in result ? result.outcome.status : (result.error as { code?: string }).code,
        again: again.cacheHit ? 'cache hit' : 'paid',
        paidAnswers: (await get<FakeJudgeStats>('/_stats')).byOutcome.ok,
        cacheRows: rows.map((r) => r.state),
      }).toEqual({ first: 'COMPLETED', again: 'cache hit', paidAnswers: 1, cacheRows: ['DONE'] });
    } finally {
      await judge.close();
    }
  });
});
