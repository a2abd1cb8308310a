// The judge call's deadline against a blocked event loop, with the fake judge in a process of its
// own (so only the caller stalls) over real HTTP and the cache on the real Postgres. A scorer's
// event loop can be blocked for seconds (a synchronous call into a native library, a long garbage
// collection, a starved CPU); an answer that arrives meanwhile waits in the socket. When the loop
// resumes, timers run before sockets are read: a deadline that aborts the call at once throws
// away an answer the provider gave in time and was paid for, gives the claim back, and the next
// delivery of that content pays again.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { request } from 'undici';
import { loadJudgeConfig, type JudgeConfig } from '../consumers/judge/config.js';
import { createJudge } from '../consumers/judge/judge.js';
import { createKeyParallelConsumer } from '../consumers/runtime.js';
import { defaultCacheDir } from '../src/config.js';
import type { FakeJudgeRequestRecord, FakeJudgeStats } from '../src/fake-judge/server.js';
import { createIdempotentProducer, createKafka } from '../src/kafka.js';
import { silentLogger } from '../src/logging.js';
import { startKafka, stopKafka, type KafkaState } from '../src/stack/kafka.js';
import { createTestDatabase, waitFor, type TestDatabase } from './helpers.js';
import { createTopic } from './relay-helpers.js';

const sample = {
  prompt: 'How long do refunds take?',
  response: 'Refunds reach the original payment method within 14 days of receipt.',
  context: ['Refunds go to the original payment method within 14 days.'],
};

/** How long the judge holds the request before it answers, and the client's deadline. */
const HOLD_MS = 1000;
const TIMEOUT_MS = 2500;

function configFor(url: string, timeoutMs = TIMEOUT_MS): JudgeConfig {
  const config = loadJudgeConfig({ EVALBOX_JUDGE_CONFIG: '/judge.json' }, () =>
    JSON.stringify({ endpoints: [{ name: 'fake', baseUrl: url, model: 'fake-judge-1', timeoutMs, maxConcurrency: 4 }] }),
  );
  if (!config) throw new Error('no config');
  return config;
}

/** `evalbox fake-judge` in a process of its own, holding every request `holdMs`; resolves with its URL. */
async function startJudgeProcess(holdMs: number): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn('node', ['bin/evalbox.js', 'fake-judge', '--port', '0', '--mode', 'hang', '--hang-ms', String(holdMs)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const found = /listening on (http:\/\/\S+)/.exec(out);
      if (found) resolve(found[1] as string);
    });
    child.once('exit', (code) => reject(new Error(`fake judge exited with ${code}`)));
  });
  return { child, url };
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
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
    ({ child: judgeProcess, url } = await startJudgeProcess(HOLD_MS));
  });
  afterAll(async () => {
    await stopProcess(judgeProcess);
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

// The sequence where the chaos run met the race: a scorer's partitions are revoked about
// session.timeout.ms into an outage of the only broker while a judge call held by the provider is
// answered. The revoke used to commit the finished prefix with commitSync, which waited for the
// absent group coordinator and blocked the event loop for session.timeout.ms (10 s) across the
// answer; a lost assignment is no longer committed (consumer-commit-outage.test.ts proves the loop
// stays free), and whether blocked or not, the paid answer must end in the cache.
describe('judge deadline across a revoke during a broker outage', () => {
  /**
   * The revoke comes about 9 s after the kill (and used to block for 10 s); the judge answers 13 s
   * after the call (sent just before the kill) and the call's deadline is 16 s.
   */
  const HOLD = 13_000;
  const TIMEOUT = 16_000;
  let database: TestDatabase;
  let broker: KafkaState | undefined;
  let judgeProcess: ChildProcess;
  let url = '';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'evalbox-judge-revoke-'));
  const get = async <T>(p: string): Promise<T> => (await (await request(`${url}${p}`)).body.json()) as T;

  beforeAll(async () => {
    database = await createTestDatabase();
    broker = await startKafka(dir, undefined, () => {}, defaultCacheDir());
    ({ child: judgeProcess, url } = await startJudgeProcess(HOLD));
  }, 120_000);
  afterAll(async () => {
    await stopProcess(judgeProcess);
    if (broker) await stopKafka(broker);
    await database.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('guarantee 4: a judge answer that arrives across a revoke during a broker outage is cached, not paid for again', async () => {
    const brokers = (broker as KafkaState).brokers;
    const topic = await createTopic(brokers, 1);
    const producer = createIdempotentProducer(createKafka(brokers, 'evalbox-test'));
    await producer.connect();
    // Offset 0 finishes just after the broker dies, so the revoke has an offset to commit; offset 1
    // asks the judge, which holds the call across the revoke.
    await producer.send({ topic, messages: [{ key: 'finishes-after-the-kill', value: '0' }] });
    await producer.send({ topic, messages: [{ key: 'asks-the-judge', value: '1' }] });
    await producer.disconnect();

    const judge = createJudge({ config: configFor(url, TIMEOUT), db: database.db });
    let killed: () => void = () => {};
    const brokerKilled = new Promise<void>((resolve) => (killed = resolve));
    let judgeAsked: () => void = () => {};
    const asked = new Promise<void>((resolve) => (judgeAsked = resolve));
    let revokedAt = 0;
    const consumer = createKeyParallelConsumer({
      brokers,
      groupId: `judge-revoke-${Date.now()}`,
      topics: [topic],
      orderingKeyOf: (m) => String(m.key),
      maxInFlightPerPartition: 10,
      // No periodic commit before the revoke: what finished is committed by the revoke itself.
      commitIntervalMs: 600_000,
      logger: silentLogger(),
      async handle(message, signal) {
        if (message.offset === 0) {
          await brokerKilled;
          await new Promise((resolve) => setTimeout(resolve, 2000));
          return;
        }
        judgeAsked();
        // The revoke aborts the caller; the call itself goes on into the cache.
        await judge.score('judge_relevance', sample, { signal }).catch(() => undefined);
      },
      async deadLetter() {},
    });
    consumer.events.on('consumer:revoked', () => (revokedAt ||= Date.now()));
    // The longest the event loop went without running a timer.
    let lastTick = Date.now();
    let longestBlockMs = 0;
    const ticker = setInterval(() => {
      longestBlockMs = Math.max(longestBlockMs, Date.now() - lastTick);
      lastTick = Date.now();
    }, 50);
    try {
      await consumer.start();
      await asked;
      await waitFor(async () => (await get<FakeJudgeStats>('/_stats')).inFlight === 1, { timeoutMs: 10_000, intervalMs: 20 });
      process.kill((broker as KafkaState).pid, 'SIGKILL');
      killed();
      // Session timeout, revoke, the blocked commit, the judge's answer and the call's deadline.
      await waitFor(() => revokedAt > 0, { timeoutMs: 60_000, intervalMs: 100 });
      await waitFor(async () => (await get<FakeJudgeRequestRecord[]>('/_requests')).length === 1, { timeoutMs: 30_000, intervalMs: 100 });
      const [answer] = await get<FakeJudgeRequestRecord[]>('/_requests');
      // Let the call finish either way: read and stored, or timed out and its claim given back.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, (answer?.startedAt ?? 0) + TIMEOUT + 2000 - Date.now())));

      const { rows } = await sql<{ state: string }>`SELECT state FROM judge_cache`.execute(database.db);
      const again = await judge.score('judge_relevance', sample);
      const figures = {
        // Precondition: the answer came to a client still connected.
        answeredToAConnectedClient: answer?.outcome === 'ok' && answer.clientGone === false,
        cacheRows: rows.map((r) => r.state),
        again: again.cacheHit ? 'cache hit' : 'paid',
        paidAnswers: (await get<FakeJudgeStats>('/_stats')).byOutcome.ok,
      };
      process.stderr.write(`judge deadline across a revoke: loop blocked ${longestBlockMs} ms at most; ${JSON.stringify(figures)}\n`);
      expect(figures).toEqual({ answeredToAConnectedClient: true, cacheRows: ['DONE'], again: 'cache hit', paidAnswers: 1 });
    } finally {
      clearInterval(ticker);
      await consumer.stop(0);
      await judge.close();
    }
  }, 180_000);
});
