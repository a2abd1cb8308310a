// The chaos run's invariants, each computed from an independent source: the driver's own record
// of 202s, the database, and the topics read back with kcat (librdkafka in C, read_committed),
// not through evalbox's own consumer.
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import pg from 'pg';
import { describeJudgePayments, type JudgePayments } from './judge-payments.js';

export interface TopicRecord {
  partition: number;
  offset: number;
  key: string;
  ceId: string;
  value: string;
}

/** Reads a whole topic with kcat, committed records only, in partition order. */
export async function readTopic(brokers: string, topic: string): Promise<TopicRecord[]> {
  const child = spawn('kcat', ['-b', brokers, '-C', '-t', topic, '-e', '-q', '-X', 'isolation.level=read_committed', '-f', '%p\t%o\t%k\t%h\t%s\n'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const records: TopicRecord[] = [];
  const lines = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
  for await (const line of lines) {
    const [partition, offset, key, headers, ...value] = line.split('\t');
    const ceId = (headers ?? '')
      .split(',')
      .map((h) => h.split('='))
      .find(([name]) => name === 'ce_id')?.[1];
    records.push({ partition: Number(partition), offset: Number(offset), key: key ?? '', ceId: ceId ?? '', value: value.join('\t') });
  }
  const code = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', resolve)));
  if (code !== 0) throw new Error(`kcat exited ${code} reading ${topic}: ${stderr.slice(0, 500)}`);
  return records;
}

export interface Invariant {
  name: string;
  figure: string;
  ok: boolean;
}

export interface InvariantInput {
  databaseUrl: string;
  brokers: string;
  eventsTopic: string;
  scoresTopic: string;
  accepted: Map<string, string>;
  expected: number;
  unanswered: number;
  rejected: number;
  judge: JudgePayments | undefined;
  signals: { name: string; ok: boolean; figure: string }[];
  seed: number;
}

export async function checkInvariants(input: InvariantInput): Promise<Invariant[]> {
  const client = new pg.Client({ connectionString: input.databaseUrl });
  await client.connect();
  const out: Invariant[] = [];
  try {
    const ids = [...input.accepted.values()];
    const rows = await client.query<{ n: string }>('SELECT count(*) AS n FROM evaluations');
    const evaluationRows = Number(rows.rows[0]?.n);
    const found = await client.query<{ n: string }>('SELECT count(*) AS n FROM evaluations WHERE id = ANY($1::uuid[])', [ids]);
    const lost = ids.length - Number(found.rows[0]?.n);
    const outboxRows = await client.query<{ id: string }>(`SELECT id::text FROM outbox WHERE type = 'evaluation.created'`);
    out.push({
      name: 'accepted (202) vs evaluation rows vs outbox rows',
      figure: `${input.expected} sent, ${ids.length} accepted, ${evaluationRows} rows, ${outboxRows.rowCount} outbox rows; ${lost} accepted but missing; ${input.unanswered} attempts unanswered (retried with their key); ${input.rejected} rejected`,
      ok: lost === 0 && ids.length === input.expected && evaluationRows === ids.length && outboxRows.rowCount === evaluationRows && input.rejected === 0,
    });

    const events = await readTopic(input.brokers, input.eventsTopic);
    const outboxIds = new Set(outboxRows.rows.map((r) => r.id));
    const onTopic = new Set(events.map((e) => e.ceId));
    const unpublished = [...outboxIds].filter((id) => !onTopic.has(id)).length;
    out.push({
      name: 'outbox events published (distinct ce_id on the events topic)',
      figure: `${onTopic.size} distinct of ${outboxIds.size} outbox events; ${unpublished} missing; ${events.length - onTopic.size} duplicate records`,
      ok: unpublished === 0,
    });

    let violations = 0;
    const lastSeq = new Map<string, number>();
    const seen = new Set<string>();
    for (const record of events) {
      if (seen.has(record.ceId)) continue;
      seen.add(record.ceId);
      const metadata = (JSON.parse(record.value) as { metadata?: { chaosApp?: string; chaosSeq?: number } }).metadata;
      if (!metadata?.chaosApp || metadata.chaosSeq === undefined) continue;
      const key = `${record.partition}/${metadata.chaosApp}`;
      const previous = lastSeq.get(key) ?? -1;
      if (metadata.chaosSeq < previous) violations++;
      else lastSeq.set(key, metadata.chaosSeq);
    }
    out.push({
      name: 'per-key order on Kafka (first occurrences in sequence order)',
      figure: `${violations} violations over ${seen.size} events`,
      ok: violations === 0,
    });

    const pending = await client.query<{ n: string }>(`SELECT count(*) AS n FROM evaluations WHERE status = 'PENDING'`);
    const notTerminal = Number(pending.rows[0]?.n);
    out.push({ name: 'evaluations not terminal after the drain', figure: String(notTerminal), ok: notTerminal === 0 });

    const scored = await readTopic(input.brokers, input.scoresTopic);
    const resultIds = new Map<string, Set<string>>();
    const lastResult = new Map<string, { status: string; scores: { dimension: string; status: string; value: number | null }[] }>();
    for (const record of scored) {
      const data = JSON.parse(record.value) as { evaluationId: string; status: string; scores: { dimension: string; status: string; value: number | null }[] };
      const set = resultIds.get(data.evaluationId) ?? new Set<string>();
      set.add(record.ceId);
      resultIds.set(data.evaluationId, set);
      lastResult.set(data.evaluationId, data);
    }
    const multiple = [...resultIds.values()].filter((s) => s.size > 1).length;
    const statuses = await client.query<{ id: string; status: string }>('SELECT id::text, status FROM evaluations');
    const scoreRows = await client.query<{ evaluation_id: string; dimension: string; status: string; value: number | null }>(
      'SELECT evaluation_id::text, dimension, status, value FROM scores',
    );
    const dbScores = new Map<string, Map<string, string>>();
    for (const s of scoreRows.rows) {
      const m = dbScores.get(s.evaluation_id) ?? new Map<string, string>();
      m.set(s.dimension, `${s.status}:${s.value}`);
      dbScores.set(s.evaluation_id, m);
    }
    let missingResult = 0;
    let disagree = 0;
    for (const { id, status } of statuses.rows) {
      const result = lastResult.get(id);
      if (!result) {
        if (status !== 'PENDING') missingResult++;
        continue;
      }
      const db = dbScores.get(id) ?? new Map<string, string>();
      const same = result.status === status && result.scores.length === db.size && result.scores.every((s) => db.get(s.dimension) === `${s.status}:${s.value}`);
      if (!same) disagree++;
    }
    out.push({
      name: 'evaluation.scored: one distinct result per evaluation, agreeing with the rows',
      figure: `${resultIds.size} evaluations with a result; ${multiple} with more than one; ${missingResult} terminal without one; ${disagree} disagreeing with score rows or status`,
      ok: multiple === 0 && missingResult === 0 && disagree === 0,
    });
  } finally {
    await client.end();
  }
  if (input.judge) {
    out.push({
      name: 'paid judge calls beyond one per distinct content',
      figure: describeJudgePayments(input.judge),
      ok: input.judge.unexplained.length === 0,
    });
  }
  for (const signal of input.signals) out.push(signal);
  out.push({ name: 'seed (replay with --seed)', figure: String(input.seed), ok: true });
  return out;
}

export function formatTable(invariants: Invariant[]): string {
  const width = Math.max(...invariants.map((i) => i.name.length));
  return invariants.map((i) => `${i.ok ? 'PASS' : 'FAIL'}  ${i.name.padEnd(width)}  ${i.figure}`).join('\n');
}
