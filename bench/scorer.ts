// Benchmark: the scoring consumer with the 4 default heuristic dimensions.
//  1. end to end: N POSTs to the API → relay → scorer → relay, from the first POST until the last
//     evaluation.scored event is acknowledged by Kafka;
//  2. a backlog of --backlog events already on Kafka: evaluations/s and the scorer's peak RSS.
//   node --import tsx bench/scorer.ts [--evaluations 10000] [--backlog 200000]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { sql } from 'kysely';
import { createDb } from '../src/db/index.js';
import { freePort } from '../src/stack/process.js';
import { evalbox, failOnExit, freshDatabase, machine, reportFigures, requireEnv, waitForHttp } from './lib.js';

const { values } = parseArgs({ options: { evaluations: { type: 'string', default: '10000' }, backlog: { type: 'string', default: '200000' } } });
const brokers = requireEnv('KAFKA_BROKERS');
const DIMENSIONS = ['groundedness', 'answer_relevance', 'pii_leak', 'toxicity'];
const body = {
  prompt: 'What is the refund window for EU orders? Answer briefly.',
  response: 'EU orders can be returned within 30 days for a full refund.',
  context: ['EU customers may return any order within 30 days of delivery for a full refund.'],
};

const rssOf = (pid: number) => {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
};

async function untilCount(url: string, query: string, target: number, onTick?: () => void): Promise<void> {
  const handle = createDb(url, { max: 1 });
  try {
    for (;;) {
      onTick?.();
      const { rows } = await sql<{ n: string }>`${sql.raw(query)}`.execute(handle.db);
      if (Number(rows[0]?.n) >= target) return;
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await handle.close();
  }
}

async function endToEnd(n: number): Promise<string> {
  const url = await freshDatabase('evalbox_bench_e2e');
  const suffix = Date.now().toString(36);
  const env = {
    EVALBOX_TOPIC_EVENTS: `bench-e2e-events-${suffix}`,
    EVALBOX_TOPIC_SCORES: `bench-e2e-scores-${suffix}`,
    EVALBOX_TOPIC_DLT: `bench-e2e-dlt-${suffix}`,
    DATABASE_URL: url,
  };
  const key = spawnSync('node', ['bin/evalbox.js', 'keys', 'create', '--app', 'bench', '--database-url', url], { encoding: 'utf8' }).stdout.trim();
  const port = await freePort();
  const admin = await freePort();
  const procs = [evalbox(['api', '--port', String(port), '--admin-port', String(admin)], env), evalbox(['relay'], env), evalbox(['scorer'], env)];
  await waitForHttp(`http://127.0.0.1:${admin}/readyz`);
  await new Promise((r) => setTimeout(r, 3000)); // relay and scorer join
  const started = Date.now();
  await autocannon({
    url: `http://127.0.0.1:${port}/v1/evaluations`,
    method: 'POST',
    connections: 16,
    amount: n,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, dimensions: DIMENSIONS }),
  });
  const posted = Date.now();
  // Done when every evaluation.scored row is behind the relay's cursor, i.e. acknowledged by Kafka.
  await Promise.race([
    ...procs.map((p, i) => failOnExit(p, ['the api', 'the relay', 'the scorer'][i] as string)),
    untilCount(
      url,
      `SELECT count(*) AS n FROM outbox o JOIN relay_leases l ON l.shard = o.shard WHERE o.type = 'evaluation.scored' AND (o.xid, o.seq) <= (l.cursor_xid, l.cursor_seq)`,
      n,
    ),
  ]);
  const seconds = (Date.now() - started) / 1000;
  for (const p of procs) p.kill('SIGTERM');
  return `end to end: ${n} evaluations, first POST → last evaluation.scored acked: ${seconds.toFixed(1)} s = ${(n / seconds).toFixed(0)} evaluations/s (POSTs took ${((posted - started) / 1000).toFixed(1)} s)`;
}

async function backlog(n: number): Promise<{ line: string; rate: number; kcatRate: number }> {
  const url = await freshDatabase('evalbox_bench_backlog');
  const topic = `bench-backlog-${Date.now().toString(36)}`;
  const handle = createDb(url, { max: 2 });
  // Each prompt and response differs (a case number), so no scorer can answer from a cache of
  // earlier texts; the context repeats, as a knowledge-base passage does.
  await sql`INSERT INTO evaluations (id, application_id, prompt, response, context, dimensions)
            SELECT gen_random_uuid(), 'app-' || (i % 20), ${body.prompt} || ' (case ' || i || ')', ${body.response} || ' See case ' || i || '.',
                   ${JSON.stringify(body.context)}::jsonb, ${DIMENSIONS}::text[]
            FROM generate_series(1, ${n}) i`.execute(handle.db);
  const { rows } = await sql<{ id: string; application_id: string }>`SELECT id, application_id FROM evaluations`.execute(handle.db);
  await handle.close();
  const file = path.join(os.tmpdir(), `evalbox-backlog-${process.pid}.txt`);
  fs.writeFileSync(
    file,
    rows
      .map(
        (r) =>
          `${r.application_id}\t${JSON.stringify({ schemaVersion: 1, evaluationId: r.id, applicationId: r.application_id, modelId: null, ...body, reference: null, metadata: {}, dimensions: DIMENSIONS, createdAt: new Date().toISOString() })}`,
      )
      .join('\n') + '\n',
  );
  spawnSync(
    'kcat',
    [
      '-P',
      '-b',
      brokers,
      '-t',
      topic,
      '-K',
      '\t',
      '-l',
      '-X',
      'topic.partitioner=murmur2_random',
      '-H',
      'ce_type=evaluation.created',
      '-H',
      'ce_specversion=1.0',
      file,
    ],
    { encoding: 'utf8' },
  );
  fs.rmSync(file);
  // The reference: the broker's read rate of the same backlog, with kcat (librdkafka in C) consuming it whole.
  const kcatStarted = Date.now();
  const read = spawnSync('kcat', ['-C', '-b', brokers, '-t', topic, '-o', 'beginning', '-e', '-q', '-f', '%o\n'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const kcatSeconds = (Date.now() - kcatStarted) / 1000;
  const kcatRead = read.stdout.split('\n').filter(Boolean).length;
  if (read.status !== 0 || kcatRead !== n) throw new Error(`kcat read ${kcatRead} of ${n} backlog events: ${read.stderr}`);
  // BENCH_PROFILE_DIR=dir writes the scorer's CPU profile there when it exits.
  const nodeArgs = process.env.BENCH_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`] : [];
  const scorer = evalbox(
    ['scorer', '--database-url', url],
    { EVALBOX_TOPIC_EVENTS: topic, EVALBOX_TOPIC_DLT: `${topic}.DLT`, EVALBOX_TOPIC_SCORES: `${topic}.scores` },
    { nodeArgs },
  );
  const exited = failOnExit(scorer, 'the scorer');
  const started = Date.now();
  let peak = 0;
  await Promise.race([
    exited,
    untilCount(url, `SELECT count(*) AS n FROM evaluations WHERE status <> 'PENDING'`, n, () => (peak = Math.max(peak, rssOf(scorer.pid as number)))),
  ]);
  const seconds = (Date.now() - started) / 1000;
  scorer.kill('SIGTERM');
  await new Promise((r) => scorer.once('exit', r));
  return {
    line: `backlog: ${n} events on Kafka, scorer alone: ${seconds.toFixed(1)} s = ${(n / seconds).toFixed(0)} evaluations/s, peak RSS ${peak.toFixed(0)} MiB; kcat -C reads the same backlog at ${(n / kcatSeconds).toFixed(0)} msgs/s`,
    rate: n / seconds,
    kcatRate: n / kcatSeconds,
  };
}

const lines = [`scorer benchmark — ${new Date().toISOString()}`, `machine: ${machine()}`, `dimensions: ${DIMENSIONS.join(', ')} (heuristic)`];
if (Number(values.evaluations) > 0) lines.push(await endToEnd(Number(values.evaluations)));
process.stderr.write(`scorer bench: a backlog of ${values.backlog} events\n`);
const drained = await backlog(Number(values.backlog));
lines.push(drained.line);
process.stdout.write(`${lines.join('\n')}\n`);
reportFigures([
  {
    figure: `scorer draining a backlog of ${values.backlog} (4 heuristic dimensions)`,
    value: drained.rate,
    unit: 'evaluations/s',
    reference: 'kcat -C reading the same backlog',
    referenceValue: drained.kcatRate,
  },
]);
process.exit(0);
