// The chaos run: the whole platform on a private stack (three brokers by default) under seeded
// faults, then a table of invariants (see docs/chaos.md). `npm run chaos` (run.ts) and the small
// run of the test suite both call runChaos.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import type { FakeJudgeRequestRecord } from '../../src/fake-judge/server.js';
import { createKafka } from '../../src/kafka.js';
import { freePort } from '../../src/stack/process.js';
import { driveApplication, type Application, type DriverStats } from './driver.js';
import { planFaults, runFault, type FaultContext, type FaultName } from './faults.js';
import { checkInvariants, type Invariant } from './invariants.js';
import { attributeJudgePayments } from './judge-payments.js';
import { EvalboxProcess, runEvalbox, type ExitRecord } from './processes.js';
import { removeChaosStack, startChaosStack } from './stack.js';

const TOPICS = { events: 'llm-evaluation-events', scores: 'llm-evaluation-scores', dlt: 'llm-evaluation-events.DLT' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface ChaosOptions {
  /** Evaluations to send. */
  count: number;
  /** The fault schedule's seed. */
  seed: number;
  /** Kafka brokers (1, or a cluster). */
  brokers: number;
  /** Applications sending (each its own sequence). */
  apps: number;
  /** Longest the traffic may run, seconds. */
  durationSeconds: number;
  /** How long to wait for every evaluation to be terminal, seconds. */
  drainSeconds: number;
  /** Keep the stack's directory and logs even when every invariant holds. */
  keep: boolean;
  /** Progress lines. */
  say: (line: string) => void;
}

export interface ChaosResult {
  invariants: Invariant[];
  /** Traffic rate, drain and wall time. */
  summary: string;
  ok: boolean;
  /** Where the processes' logs are (removed after a passing run unless kept). */
  logDir: string;
  wallSeconds: number;
}

async function waitHttp(url: string, ok: (body: string) => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const response = await request(url);
      const body = await response.body.text();
      if (response.statusCode === 200 && ok(body)) return;
    } catch {
      // not up yet
    }
    await sleep(250);
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms`);
}

/** Runs the platform under the seeded faults and checks the invariants; never throws for a failed invariant. */
export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const { count, seed, say } = options;
  const brokerCount = options.brokers;
  const appCount = Math.min(options.apps, count);
  const started = Date.now();
  say(`seed ${seed}, ${count} evaluations, ${appCount} applications, ${brokerCount} broker(s)`);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'evalbox-chaos-'));
  const logDir = path.join(dir, 'logs');
  fs.mkdirSync(logDir);
  const stack = await startChaosStack(dir, brokerCount, (line) => say(line));
  const exits: ExitRecord[] = [];
  const processes: EvalboxProcess[] = [];
  let result: ChaosResult | undefined;
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: stack.postgres.url, KAFKA_BROKERS: stack.kafka.brokers, EVALBOX_LOG_LEVEL: 'info' };
    const envNow = () => ({ ...env, DATABASE_URL: stack.postgres.url });
    await runEvalbox(['migrate'], env);
    const apps: Application[] = [];
    for (let i = 0; i < appCount; i++) {
      const id = `chaos-app-${i}`;
      apps.push({ id, key: (await runEvalbox(['keys', 'create', '--app', id], env)).trim() });
    }
    // Topics replicated as the cluster allows (broker defaults: RF min(N, 3), min.insync.replicas N-1).
    const admin = createKafka(stack.kafka.brokers, 'evalbox-chaos').admin();
    await admin.connect();
    await admin.createTopics({ topics: Object.values(TOPICS).map((topic) => ({ topic, numPartitions: 6, replicationFactor: -1 })) }).catch(() => {});
    await admin.disconnect();

    const judgePort = await freePort();
    const apiPort = await freePort();
    const make = async (name: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}) => {
      const admin = await freePort();
      const p = new EvalboxProcess(name, [...args, '--admin-port', String(admin)], { ...envNow(), ...extraEnv }, logDir, exits, admin);
      processes.push(p);
      return p;
    };
    const judge = new EvalboxProcess(
      'fake-judge',
      ['fake-judge', '--port', String(judgePort), '--latency-ms', '5-30', '--seed', String(seed)],
      env,
      logDir,
      exits,
    );
    processes.push(judge);
    // Each scorer names itself to the judge, so the judge's log tells whose calls a kill cut off.
    const judgeEnv = (name: string) => {
      const file = path.join(dir, `judge-${name}.json`);
      const endpoint = { name: 'default', baseUrl: `http://127.0.0.1:${judgePort}`, model: 'fake-judge-1', headers: { 'x-judge-client': name } };
      fs.writeFileSync(file, JSON.stringify({ endpoints: [endpoint] }));
      return { EVALBOX_JUDGE_CONFIG: file };
    };
    const scorers = [await make('scorer-0', ['scorer'], judgeEnv('scorer-0')), await make('scorer-1', ['scorer'], judgeEnv('scorer-1'))];
    const relays = [await make('relay-0', ['relay']), await make('relay-1', ['relay'])];
    await make('api', ['api', '--port', String(apiPort)]);
    for (const p of processes) p.start();
    const baseUrl = `http://127.0.0.1:${apiPort}`;
    // Traffic names judge_relevance: wait until a scorer has published it (the API refuses it before).
    const offers = (body: string) => (JSON.parse(body) as { items: { id: string }[] }).items.some((d) => d.id === 'judge_relevance');
    await waitHttp(`${baseUrl}/v1/dimensions`, offers, 90_000);
    say(`platform up after ${Math.round((Date.now() - started) / 1000)} s; logs in ${logDir}`);

    const stats: DriverStats = { accepted: new Map(), replays: 0, unanswered: 0, serverErrors: 0, throttled: 0, rejected: [] };
    const plan = planFaults(seed, count, brokerCount);
    say(`fault plan: ${plan.map((f) => `${f.name}@${f.at}`).join(', ')}`);
    const faultContext: FaultContext = {
      stack,
      relays,
      scorers,
      judgeUrl: `http://127.0.0.1:${judgePort}`,
      databaseUrl: () => stack.postgres.url,
      say,
      results: [],
      seed,
      timeline: [],
    };
    let acceptedCount = 0;
    let nextFault = 0;
    let faultRunner: Promise<void> = Promise.resolve();
    const onAccepted = () => {
      acceptedCount++;
      while (nextFault < plan.length && acceptedCount >= (plan[nextFault]?.at ?? Infinity)) {
        const fault = plan[nextFault++]?.name as FaultName;
        faultRunner = faultRunner
          .then(() => runFault(fault, faultContext))
          .catch((error: Error) => {
            say(`fault ${fault} failed: ${error.message}`);
          });
      }
    };
    const deadline = Date.now() + options.durationSeconds * 1000;
    const progress = setInterval(() => say(`${acceptedCount}/${count} accepted, ${stats.unanswered} unanswered, ${stats.serverErrors} 5xx`), 10_000);
    const perApp = Math.floor(count / appCount);
    const extra = count - perApp * appCount;
    await Promise.all(
      apps.map((app, i) =>
        driveApplication(() => baseUrl, app, perApp + (i < extra ? 1 : 0), {
          judgeEvery: 4,
          repeatEvery: 10,
          stats,
          onAccepted,
          stopped: () => Date.now() > deadline,
        }),
      ),
    );
    clearInterval(progress);
    await faultRunner;
    const driveSeconds = (Date.now() - started) / 1000;
    say(`traffic done: ${stats.accepted.size} accepted in ${Math.round(driveSeconds)} s; draining`);

    const drainDeadline = Date.now() + options.drainSeconds * 1000;
    // The scorer may still finish evaluations; wait for no PENDING rows (bounded by the drain timeout).
    const pg = await import('pg');
    const client = new pg.default.Client({ connectionString: stack.postgres.url });
    await client.connect();
    for (;;) {
      const pending = Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM evaluations WHERE status = 'PENDING'`)).rows[0]?.n);
      const backlog = Number(
        (
          await client.query<{ n: string }>(
            `SELECT count(*) AS n FROM outbox o LEFT JOIN relay_leases l ON l.shard = o.shard WHERE (o.xid, o.seq) > (coalesce(l.cursor_xid, '0'::xid8), coalesce(l.cursor_seq, 0))`,
          )
        ).rows[0]?.n,
      );
      if ((pending === 0 && backlog === 0) || Date.now() > drainDeadline) break;
      await sleep(1000);
    }
    await client.end();
    const drainSeconds = (Date.now() - started) / 1000 - driveSeconds;

    // What the judge billed, request by request, and why any content was paid for twice.
    const judgeRequests = (await (await request(`${faultContext.judgeUrl}/_requests`)).body.json()) as FakeJudgeRequestRecord[];
    fs.writeFileSync(path.join(logDir, 'judge-requests.json'), JSON.stringify(judgeRequests));
    fs.writeFileSync(path.join(logDir, 'faults.json'), JSON.stringify(faultContext.timeline, null, 1));
    const payments = attributeJudgePayments(judgeRequests, faultContext.timeline);

    const signals = faultContext.results;
    for (const p of processes) await p.stop(30_000, true);
    const unexpected = exits.filter((e) => !e.expected);
    signals.push({
      name: 'processes that exited without being told to',
      figure: unexpected.length === 0 ? '0' : unexpected.map((e) => `${e.name} (code ${e.code}, signal ${e.signal})`).join('; '),
      ok: unexpected.length === 0,
    });
    const invariants = await checkInvariants({
      databaseUrl: stack.postgres.url,
      brokers: stack.kafka.brokers,
      eventsTopic: TOPICS.events,
      scoresTopic: TOPICS.scores,
      accepted: stats.accepted,
      expected: count,
      unanswered: stats.unanswered + stats.serverErrors,
      rejected: stats.rejected.length,
      judge: payments,
      signals,
      seed,
    });
    const wallSeconds = Math.round((Date.now() - started) / 1000);
    let summary = `${count} evaluations, ${brokerCount} broker(s), ${appCount} applications: traffic ${Math.round(driveSeconds)} s (${Math.round(stats.accepted.size / driveSeconds)} accepted/s), drain ${Math.round(drainSeconds)} s, wall ${wallSeconds} s; replays ${stats.replays}, 429s ${stats.throttled}`;
    if (stats.rejected.length > 0) summary += `\nfirst rejections: ${JSON.stringify(stats.rejected.slice(0, 3))}`;
    if (payments.unexplained.length > 0) summary += `\nunexplained judge payments (first 3 contents): ${JSON.stringify(payments.unexplained.slice(0, 3))}`;
    result = { invariants, summary, ok: invariants.every((i) => i.ok), logDir, wallSeconds };
    return result;
  } finally {
    for (const p of processes) await p.kill9(true);
    await stack.stop().catch((error: Error) => say(`stack stop: ${error.message}`));
    if (!options.keep && result?.ok) removeChaosStack(dir);
  }
}
