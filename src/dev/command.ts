// `evalbox dev`: the whole pipeline on this machine in one command. Brings the local stack up,
// migrates, creates demo keys, runs the fake judge, the scorer, two relays and the API as one
// supervised process tree, sends demo traffic, shows live progress and ends with a summary.
// `--once` does the same without a live screen, waits until every accepted evaluation is
// terminal, and exits non-zero when one was lost or stuck.
import path from 'node:path';
import logUpdate from 'log-update';
import { parse, UsageError, type Command } from '../cli/args.js';
import { loadConfig } from '../config.js';
import { createDb, migrateToLatest, type DbHandle } from '../db/index.js';
import { coerceError } from '../errors.js';
import { randomBytes } from 'node:crypto';
import { createApiKey } from '../keys.js';
import { stackUp } from '../stack/index.js';
import { freePort } from '../stack/process.js';
import { relayRuntimeEnv } from '../process.js';
import { acceptToScoredLatency, dimensionMeans, outboxBacklog, scrape, statusCounts, sumOf, TERMINAL, type StatusCounts } from './progress.js';
import { latencyTable, liveFrame, meansTable, progressLine, type PipelineFigures } from './screen.js';
import { Supervisor, type ChildSpec } from './supervisor.js';
import { DEMO_APPLICATIONS, DEMO_DIMENSIONS_OFFLINE, demoEvaluations, MALFORMED_REQUESTS, type DemoApplication } from './traffic.js';

const JUDGE_DIMENSIONS = ['judge_faithfulness', 'judge_relevance'];
/** The order processes stop in: intake first, then publishing, then scoring, the judge last. */
const STOP_ORDER = ['console', 'api', 'relay-a', 'relay-b', 'scorer', 'fake-judge'];

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs: number, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!signal.aborted) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200, signal);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

const ok = async (url: string) => (await fetch(url, { signal: AbortSignal.timeout(2_000) })).ok;

function positiveInt(value: string | undefined, flag: string, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${flag} must be an integer >= ${min}, got "${value}"`);
  return n;
}

function fraction(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new UsageError(`--${flag} must be a number in [0, 1], got "${value}"`);
  return n;
}

interface Traffic {
  target: number;
  sent: number;
  accepted: string[];
  rejected: { expected: number; unexpected: number; sent: number };
  unexpected: string[];
}

export const devCommand: Command = {
  name: 'dev',
  summary: 'run the whole pipeline locally with demo traffic and a live view',
  help: `Usage: evalbox dev [--once] [--evaluations N] [--rate R] ...

Starts Postgres and Kafka (or uses DATABASE_URL / KAFKA_BROKERS when they answer), migrates,
creates a demo API key per application, and runs the fake judge, the scorer, two relays (one
leads, one stands by) and the API as one supervised process tree: a child that exits is
reported and started again. Sends RAG-style demo traffic from three applications (most answers
grounded, some ungrounded, off-topic, leaking personal data or abusive) and a few malformed
requests that must get their 4xx, shows live progress, and ends with a summary: scores per
dimension and application, accept->scored latency, and where to look next.
Ctrl-C stops every process cleanly. Logs of each process: <cache dir>/dev/<name>.log.

Options:
  --once               no live screen: wait until every accepted evaluation is terminal and the
                       outbox is drained, print the summary, stop, and exit 0; exit 1 when an
                       evaluation was lost or stuck, or a request got an unexpected status
  --evaluations N      demo evaluations to send (default 150; --once: 40)
  --rate R             evaluations per second (default 25)
  --seed N             seed of the demo traffic (default: random)
  --judge-faults F     share of judge answers that are malformed, to show the DLT (default 0.02)
  --timeout-s S        how long --once waits for the pipeline (default 180)
  --api-port P         port of the API (default: a free port)
  --log-level LEVEL    log level of the processes (env EVALBOX_LOG_LEVEL, default info)
  -h, --help           this help

Environment: DATABASE_URL, KAFKA_BROKERS, EVALBOX_CACHE_DIR, and every EVALBOX_* setting of
the processes it runs (topics, relay and scorer settings).`,
  async run(argv) {
    const { values } = parse(argv, {
      once: { type: 'boolean' },
      evaluations: { type: 'string' },
      rate: { type: 'string' },
      seed: { type: 'string' },
      'judge-faults': { type: 'string' },
      'timeout-s': { type: 'string' },
      'api-port': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      process.stdout.write(`${this.help}\n`);
      return 0;
    }
    const once = Boolean(values.once);
    const options = {
      once,
      evaluations: positiveInt(values.evaluations, 'evaluations', once ? 40 : 150),
      rate: positiveInt(values.rate, 'rate', 25),
      seed: positiveInt(values.seed, 'seed', randomBytes(4).readUInt32BE() >>> 1, 0),
      judgeFaults: fraction(values['judge-faults'], 'judge-faults', 0.02),
      timeoutMs: positiveInt(values['timeout-s'], 'timeout-s', 180) * 1000,
      apiPort: values['api-port'] === undefined ? undefined : positiveInt(values['api-port'], 'api-port', 0),
      logLevel: values['log-level'] ?? process.env.EVALBOX_LOG_LEVEL ?? 'info',
    };
    return runDev(options);
  },
};

interface DevOptions {
  once: boolean;
  evaluations: number;
  rate: number;
  seed: number;
  judgeFaults: number;
  timeoutMs: number;
  apiPort: number | undefined;
  logLevel: string;
}

async function runDev(options: DevOptions): Promise<number> {
  const live = !options.once && Boolean(process.stdout.isTTY);
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (!stop.signal.aborted) say(`\n${signal}: stopping every process...`);
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);

  const config = loadConfig(process.env, {});
  say('evalbox dev: starting Postgres and Kafka (first run: installs what is missing)...');
  const endpoints = await stackUp({
    cacheDir: config.cacheDir,
    databaseUrl: config.databaseUrl || undefined,
    kafkaBrokers: config.kafkaBrokers || undefined,
    log: (line) => process.stderr.write(`  stack: ${line}\n`),
  });
  say(`  postgres ${endpoints.databaseUrl.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@')}   kafka ${endpoints.kafkaBrokers}`);

  const handle = createDb(endpoints.databaseUrl, { max: 4, applicationName: 'evalbox-dev' });
  const supervisor = new Supervisor(path.join(config.cacheDir, 'dev'));
  const recent: string[] = [];
  let rendering = false;
  const note = (line: string) => {
    const stamped = `${new Date().toISOString().slice(11, 19)} ${line}`;
    recent.push(stamped);
    if (recent.length > 6) recent.shift();
    if (!live || !rendering) say(stamped);
  };
  supervisor.on('started', (c) => note(`started ${c.spec.name} pid=${c.pid}${c.restarts ? ` (restart ${c.restarts})` : ''}`));
  supervisor.on('died', (c) => {
    const how = c.lastExit?.signal ? `signal ${c.lastExit.signal}` : `code ${c.lastExit?.code}`;
    note(`${c.spec.name} exited (${how}); restarting it (log: ${c.logFile})`);
  });

  try {
    const { rows } = await migrate(handle);
    if (rows) say(`  migrated: ${rows} migration(s) applied`);
    const applications: DemoApplication[] = [];
    for (const id of DEMO_APPLICATIONS) applications.push({ id, key: (await createApiKey(handle.db, id)).key });
    say(`  demo keys: ${applications.map((a) => `${a.id}=${a.key}`).join('  ')}`);

    const ports = {
      api: options.apiPort || (await freePort()),
      apiAdmin: await freePort(),
      relayA: await freePort(),
      relayB: await freePort(),
      scorer: await freePort(),
      judge: await freePort(),
      console: await freePort(),
    };
    const env = {
      ...process.env,
      DATABASE_URL: endpoints.databaseUrl,
      KAFKA_BROKERS: endpoints.kafkaBrokers,
      EVALBOX_LOG_LEVEL: options.logLevel,
      EVALBOX_JUDGE_BASE_URL: `http://127.0.0.1:${ports.judge}`,
      EVALBOX_JUDGE_MODEL: 'fake-judge-1',
    };
    const spec = (name: string, args: string[], adminPort?: number): ChildSpec => ({
      name,
      args: adminPort ? [...args, '--admin-port', String(adminPort)] : args,
      env: args[0] === 'relay' ? { ...env, ...relayRuntimeEnv(env) } : env,
      ...(adminPort ? { adminPort } : {}),
    });
    const judgeArgs = ['fake-judge', '--port', String(ports.judge), '--latency-ms', '20-120', '--seed', String(options.seed)];
    if (options.judgeFaults > 0) judgeArgs.push('--mode', 'malformed', '--fraction', String(options.judgeFaults));
    const startupMs = 90_000;
    supervisor.start(spec('fake-judge', judgeArgs));
    await waitUntil('the fake judge', () => ok(`http://127.0.0.1:${ports.judge}/v1/models`), startupMs, stop.signal);
    // The scorer publishes the judge dimensions before it serves /readyz; the API reads them at start.
    supervisor.start(spec('scorer', ['scorer'], ports.scorer));
    await waitUntil('the scorer', () => ok(`http://127.0.0.1:${ports.scorer}/readyz`), startupMs, stop.signal);
    supervisor.start(spec('relay-a', ['relay'], ports.relayA));
    await waitUntil('the first relay', () => ok(`http://127.0.0.1:${ports.relayA}/readyz`), startupMs, stop.signal);
    supervisor.start(spec('relay-b', ['relay'], ports.relayB));
    supervisor.start(spec('api', ['api', '--port', String(ports.api)], ports.apiAdmin));
    // The web console on loopback (open to operators here), reading judge state from the scorer's /metrics.
    supervisor.start(spec('console', ['console', '--port', String(ports.console), '--scorer-metrics', `http://127.0.0.1:${ports.scorer}/metrics`]));
    const base = `http://127.0.0.1:${ports.api}`;
    await waitUntil('the API', () => ok(`${base}/openapi.json`), startupMs, stop.signal);
    await waitUntil('the second relay', () => ok(`http://127.0.0.1:${ports.relayB}/readyz`), startupMs, stop.signal);
    const key = applications[0]?.key ?? '';
    await waitUntil(
      'the judge dimensions in the API',
      async () =>
        JSON.stringify(await (await fetch(`${base}/v1/dimensions`, { headers: { authorization: `Bearer ${key}` } })).json()).includes(
          JUDGE_DIMENSIONS[0] as string,
        ),
      startupMs,
      stop.signal,
    );
    if (stop.signal.aborted) return await shutdown(supervisor, handle, 130);
    say(`console: http://127.0.0.1:${ports.console}  (watch the pipeline live while the demo traffic flows)`);
    say(`all processes ready; sending ${options.evaluations} demo evaluations at ${options.rate}/s (seed ${options.seed})`);

    const traffic: Traffic = {
      target: options.evaluations,
      sent: 0,
      accepted: [],
      rejected: { expected: 0, unexpected: 0, sent: 0 },
      unexpected: [],
    };
    const started = Date.now();
    const figures = async (): Promise<PipelineFigures> => collectFigures(handle, supervisor, traffic, started);

    let frame: PipelineFigures | undefined;
    const render = async () => {
      frame = await figures().catch(() => frame);
      if (!frame) return;
      if (!rendering) return;
      if (live) logUpdate(liveFrame(supervisor.list(), frame, recent));
      else say(progressLine(frame));
    };
    rendering = true;
    const ticker = setInterval(() => void render(), live ? 500 : 2_000);
    try {
      await sendTraffic(base, applications, options, traffic, stop.signal);
      // Done when every accepted evaluation is terminal and its result event has left the outbox.
      const deadline = Date.now() + options.timeoutMs;
      while (!stop.signal.aborted && Date.now() < deadline) {
        const statuses = await statusCounts(handle.db, traffic.accepted);
        const terminal = TERMINAL.reduce((n, s) => n + statuses[s], 0);
        if (terminal === traffic.accepted.length && (await outboxBacklog(handle.db)) === 0) break;
        await sleep(500, stop.signal);
      }
    } finally {
      clearInterval(ticker);
    }
    await render();
    if (live) logUpdate.done();
    rendering = false;

    const statuses = await statusCounts(handle.db, traffic.accepted);
    const backlog = await outboxBacklog(handle.db);
    await printSummary(handle, traffic, statuses, backlog, frame?.dlt ?? 0, say);
    const failures = verdict(traffic, statuses, backlog);
    await printNextSteps(base, ports, applications, supervisor, endpoints, say);
    if (failures.length) for (const f of failures) say(`FAILED: ${f}`);
    else say(`OK: all ${traffic.accepted.length} accepted evaluations are terminal, their result events published.`);

    if (!options.once && !stop.signal.aborted) {
      say('\nThe processes keep running for you to explore. Ctrl-C stops them.');
      await new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
    }
    const code = !options.once ? 0 : stop.signal.aborted ? 130 : failures.length ? 1 : 0;
    return await shutdown(supervisor, handle, code);
  } catch (error) {
    await shutdown(supervisor, handle, 1);
    throw error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
  }
}

async function migrate(handle: DbHandle): Promise<{ rows: number }> {
  const { error, results } = await migrateToLatest(handle.db);
  if (error) throw new Error(`migration failed: ${coerceError(error).message}`);
  return { rows: results.filter((r) => r.status === 'Success').length };
}

async function shutdown(supervisor: Supervisor, handle: DbHandle, code: number): Promise<number> {
  process.stdout.write('stopping: console, api, relay-a, relay-b, scorer, fake-judge...\n');
  await supervisor.stop(STOP_ORDER);
  await handle.close();
  process.stdout.write('stopped.\n');
  return code;
}

async function sendTraffic(base: string, applications: DemoApplication[], options: DevOptions, traffic: Traffic, signal: AbortSignal): Promise<void> {
  const runId = `dev-${Date.now().toString(36)}`;
  const demo = demoEvaluations(options.evaluations, { seed: options.seed, dimensions: [...DEMO_DIMENSIONS_OFFLINE, ...JUDGE_DIMENSIONS], runId });
  const keyOf = new Map(applications.map((a) => [a.id, a.key]));
  const malformedEvery = Math.max(1, Math.floor(demo.length / (MALFORMED_REQUESTS.length + 1)));
  const started = Date.now();
  const inFlight = new Set<Promise<void>>();
  const post = async (headers: Record<string, string>, body: string) =>
    fetch(`${base}/v1/evaluations`, { method: 'POST', headers, body, signal: AbortSignal.timeout(30_000) });

  for (let i = 0; i < demo.length && !signal.aborted; i++) {
    // Paced: request i leaves at i / rate seconds.
    const wait = started + (i * 1000) / options.rate - Date.now();
    if (wait > 0) await sleep(wait, signal);
    const item = demo[i];
    if (!item) break;
    const key = keyOf.get(item.application) ?? '';
    const task = (async () => {
      traffic.sent++;
      try {
        const response = await post({ authorization: `Bearer ${key}`, 'content-type': 'application/json' }, JSON.stringify(item.body));
        const body = (await response.json().catch(() => ({}))) as { evaluationId?: string };
        if (response.status === 202 && body.evaluationId) traffic.accepted.push(body.evaluationId);
        else traffic.unexpected.push(`demo evaluation ${i}: HTTP ${response.status}`);
      } catch (error) {
        traffic.unexpected.push(`demo evaluation ${i}: ${(error as Error).message}`);
      }
    })();
    inFlight.add(task);
    void task.finally(() => inFlight.delete(task));

    const malformed = i % malformedEvery === malformedEvery - 1 ? MALFORMED_REQUESTS[Math.floor(i / malformedEvery)] : undefined;
    if (malformed) {
      traffic.rejected.sent++;
      const { headers, body } = malformed.init(key);
      const response = await post(headers, body).catch((error: Error) => error);
      if (!(response instanceof Error)) await response.body?.cancel();
      if (!(response instanceof Error) && response.status === malformed.expectedStatus) traffic.rejected.expected++;
      else {
        traffic.rejected.unexpected++;
        traffic.unexpected.push(
          `${malformed.what}: expected ${malformed.expectedStatus}, got ${response instanceof Error ? response.message : response.status}`,
        );
      }
    }
  }
  await Promise.all(inFlight);
}

async function collectFigures(handle: DbHandle, supervisor: Supervisor, traffic: Traffic, started: number): Promise<PipelineFigures> {
  const metricsOf = async (name: string) => {
    const port = supervisor.get(name)?.spec.adminPort;
    return port ? scrape(port).catch(() => []) : [];
  };
  const [relayA, relayB, scorer, statuses, backlog] = await Promise.all([
    metricsOf('relay-a'),
    metricsOf('relay-b'),
    metricsOf('scorer'),
    statusCounts(handle.db, traffic.accepted),
    outboxBacklog(handle.db),
  ]);
  const leads = (samples: typeof relayA) => sumOf(samples, 'evalbox_relay_shard_leader') > 0;
  return {
    target: traffic.target,
    sent: traffic.sent,
    accepted: traffic.accepted.length,
    rejected: traffic.rejected,
    statuses,
    published: sumOf(relayA, 'evalbox_relay_published_events_total') + sumOf(relayB, 'evalbox_relay_published_events_total'),
    dlt: sumOf(scorer, 'evalbox_scorer_dlt_records_total'),
    consumerLag: sumOf(scorer, 'evalbox_consumer_lag_messages'),
    outboxBacklog: backlog,
    leader: leads(relayA) ? 'relay-a' : leads(relayB) ? 'relay-b' : undefined,
    elapsedMs: Date.now() - started,
  };
}

/** What makes `--once` fail: anything lost, stuck, or answered other than expected. */
export function verdict(traffic: Traffic, statuses: StatusCounts, backlog: number): string[] {
  const failures: string[] = [];
  if (statuses.missing) failures.push(`${statuses.missing} accepted evaluation(s) are not in the database (lost)`);
  if (statuses.PENDING) failures.push(`${statuses.PENDING} evaluation(s) still PENDING (stuck)`);
  if (backlog) failures.push(`${backlog} outbox event(s) not published`);
  if (traffic.accepted.length === 0) failures.push('no evaluation was accepted');
  for (const line of traffic.unexpected.slice(0, 10)) failures.push(`unexpected answer: ${line}`);
  return failures;
}

async function printSummary(
  handle: DbHandle,
  traffic: Traffic,
  statuses: StatusCounts,
  backlog: number,
  dlt: number,
  say: (line: string) => void,
): Promise<void> {
  const ids = traffic.accepted;
  say('\n== Summary');
  say(
    `accepted ${ids.length}   SCORED ${statuses.SCORED}   PARTIALLY_SCORED ${statuses.PARTIALLY_SCORED}   SCORING_FAILED ${statuses.SCORING_FAILED}   ` +
      `PENDING ${statuses.PENDING}   lost ${statuses.missing}   dead letters ${dlt}   outbox backlog ${backlog}   malformed -> expected 4xx ${traffic.rejected.expected}/${traffic.rejected.sent}`,
  );
  say('\nMean score per dimension and application (0..1; pii_leak and toxicity: lower is better)');
  say(meansTable(await dimensionMeans(handle.db, ids, 'application'), 'application'));
  say('\nThe same by kind of demo answer (what each dimension catches)');
  say(meansTable(await dimensionMeans(handle.db, ids, 'answerKind'), 'answer'));
  say('\nLatency from accepted (202) to scored');
  say(latencyTable(await acceptToScoredLatency(handle.db, ids)));
}

async function printNextSteps(
  base: string,
  ports: { apiAdmin: number; relayA: number; relayB: number; scorer: number; console: number },
  applications: DemoApplication[],
  supervisor: Supervisor,
  { databaseUrl, kafkaBrokers }: { databaseUrl: string; kafkaBrokers: string },
  say: (line: string) => void,
): Promise<void> {
  const key = applications[0]?.key ?? '';
  say('\n== Where to look next');
  say(`API            ${base}   (key of ${applications[0]?.id}: ${key})`);
  say(`               curl -s ${base}/v1/evaluations?limit=5 -H 'authorization: Bearer ${key}'`);
  say(
    `metrics        http://127.0.0.1:${ports.apiAdmin}/metrics (api)  :${ports.relayA}/metrics :${ports.relayB}/metrics (relays)  :${ports.scorer}/metrics (scorer)`,
  );
  say(`inspect        export DATABASE_URL='${databaseUrl}' KAFKA_BROKERS='${kafkaBrokers}'`);
  say('               npx evalbox outbox backlog | npx evalbox outbox throughput | npx evalbox dlt list | npx evalbox stack status');
  say(`console        http://127.0.0.1:${ports.console}   (pipeline, evaluations, quality, dead letters; open to operators on loopback)`);
  say(
    `logs           ${supervisor
      .list()
      .map((c) => c.logFile)
      .join('  ')}`,
  );
}
