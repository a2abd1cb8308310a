// `npm run chaos`: the whole platform on a private stack (three brokers by default) under seeded
// faults, then a table of invariants. Exits 1 if any invariant fails. See docs/chaos.md.
//   --count N      evaluations to send (default 100000)      --seed S     fault schedule (default: random)
//   --brokers N    Kafka brokers (default 3)                  --apps N     applications (default 16)
//   --duration S   longest the traffic may run (default 1800) --drain S    drain timeout (default 300)
//   --keep         keep the stack's directory and logs
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { createKafka } from '../../src/kafka.js';
import { freePort } from '../../src/stack/process.js';
import { driveApplication, type Application, type DriverStats } from './driver.js';
import { planFaults, runFault, type FaultContext, type FaultName } from './faults.js';
import { checkInvariants, formatTable } from './invariants.js';
import { EvalboxProcess, runEvalbox, type ExitRecord } from './processes.js';
import { startChaosStack } from './stack.js';

const TOPICS = { events: 'llm-evaluation-events', scores: 'llm-evaluation-scores', dlt: 'llm-evaluation-events.DLT' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const say = (line: string) => process.stderr.write(`chaos: ${line}\n`);

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

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      count: { type: 'string', default: '100000' },
      seed: { type: 'string' },
      brokers: { type: 'string', default: '3' },
      apps: { type: 'string', default: '16' },
      duration: { type: 'string', default: '1800' },
      drain: { type: 'string', default: '300' },
      keep: { type: 'boolean', default: false },
    },
  });
  const count = Number(values.count);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
  const brokerCount = Number(values.brokers);
  const appCount = Math.min(Number(values.apps), count);
  const started = Date.now();
  say(`seed ${seed}, ${count} evaluations, ${appCount} applications, ${brokerCount} broker(s)`);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'evalbox-chaos-'));
  const logDir = path.join(dir, 'logs');
  fs.mkdirSync(logDir);
  const stack = await startChaosStack(dir, brokerCount, (line) => say(line));
  const exits: ExitRecord[] = [];
  const processes: EvalboxProcess[] = [];
  let exitCode = 1;
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
    const judgeEnv = { EVALBOX_JUDGE_BASE_URL: `http://127.0.0.1:${judgePort}`, EVALBOX_JUDGE_MODEL: 'fake-judge-1' };
    const scorers = [await make('scorer-0', ['scorer'], judgeEnv), await make('scorer-1', ['scorer'], judgeEnv)];
    const relays = [await make('relay-0', ['relay']), await make('relay-1', ['relay'])];
    await make('api', ['api', '--port', String(apiPort)]);
    for (const p of processes) p.start();
    const baseUrl = `http://127.0.0.1:${apiPort}`;
    await waitHttp(`${baseUrl}/v1/dimensions`, (body) => body.includes('judge_relevance'), 90_000);
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
      judgeInFlightAtKills: 0,
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
    const deadline = Date.now() + Number(values.duration) * 1000;
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

    const drainDeadline = Date.now() + Number(values.drain) * 1000;
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

    const judgeStats = (await (await request(`${faultContext.judgeUrl}/_stats`)).body.json()) as { byOutcome: Record<string, number>; distinctContent: number };
    const paidDuplicates = Math.max(0, (judgeStats.byOutcome.ok ?? 0) - judgeStats.distinctContent);
    const judgeRequests = (await (await request(`${faultContext.judgeUrl}/_requests`)).body.json()) as unknown[];
    fs.writeFileSync(path.join(logDir, 'judge-requests.json'), JSON.stringify(judgeRequests));
    fs.writeFileSync(path.join(logDir, 'faults.json'), JSON.stringify(faultContext.timeline, null, 1));

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
      judge: { paidDuplicates, inFlightAtKills: faultContext.judgeInFlightAtKills },
      signals,
      seed,
    });
    process.stdout.write(`\n${formatTable(invariants)}\n\n`);
    process.stdout.write(
      `${count} evaluations, ${brokerCount} broker(s), ${appCount} applications: traffic ${Math.round(driveSeconds)} s (${Math.round(stats.accepted.size / driveSeconds)} accepted/s), drain ${Math.round(drainSeconds)} s, wall ${Math.round((Date.now() - started) / 1000)} s; replays ${stats.replays}, 429s ${stats.throttled}\n`,
    );
    if (stats.rejected.length > 0) process.stdout.write(`first rejections: ${JSON.stringify(stats.rejected.slice(0, 3))}\n`);
    exitCode = invariants.every((i) => i.ok) ? 0 : 1;
    if (exitCode !== 0) process.stdout.write(`logs: ${logDir}\n`);
  } finally {
    for (const p of processes) await p.kill9(true);
    await stack.stop().catch((error: Error) => say(`stack stop: ${error.message}`));
    if (!values.keep && exitCode === 0) fs.rmSync(dir, { recursive: true, force: true });
  }
  return exitCode;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`chaos: ${error.stack ?? error.message}\n`);
    process.exit(2);
  },
);
