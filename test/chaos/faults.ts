// The chaos run's faults, drawn from the seed and fired when the traffic reaches a seeded share
// of its count, so a failing seed replays the same schedule.
import pg from 'pg';
import { request } from 'undici';
import type { EvalboxProcess } from './processes.js';
import type { ChaosStack } from './stack.js';
import { seededRandom } from '../../src/random.js';

export const FAULTS = [
  'kill-relay-leader',
  'kill-scorer',
  'kill-broker',
  'kill-postgres',
  'zombie-relay',
  'sigterm-relay',
  'sigterm-scorer',
  'judge-429',
  'judge-500',
  'judge-hang',
] as const;
export type FaultName = (typeof FAULTS)[number];

export interface FaultContext {
  stack: ChaosStack;
  relays: EvalboxProcess[];
  scorers: EvalboxProcess[];
  judgeUrl: string;
  databaseUrl: () => string;
  say: (line: string) => void;
  results: { name: string; ok: boolean; figure: string }[];
  seed: number;
  /** When each fault began and ended (ms since the epoch), for attributing its effects. */
  timeline: FaultMoment[];
}

export interface FaultMoment {
  name: FaultName;
  /** The process the fault hit, when it hit one. */
  target?: string;
  startedAt: number;
  endedAt: number;
  /** When the process it hit had exited (kill -9, SIGTERM), before its restart. */
  exitedAt?: number;
}

export function planFaults(seed: number, count: number, brokers: number): { name: FaultName; at: number }[] {
  const random = seededRandom(seed);
  return FAULTS.filter((name) => brokers > 0 || name !== 'kill-broker')
    .map((name) => ({ name, at: Math.max(1, Math.floor(count * (0.05 + 0.8 * random()))) }))
    .sort((a, b) => a.at - b.at);
}

/** How long a hung judge request is held before it is answered (below the judge client's 30 s timeout). */
export const JUDGE_HANG_MS = 20_000;
/** How long each judge fault mode lasts. */
const JUDGE_FAULT_MS = 5000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The relay process that holds shard 0's lease now (its owner id carries its pid). */
async function leadingRelay(context: FaultContext): Promise<EvalboxProcess | undefined> {
  const client = new pg.Client({ connectionString: context.databaseUrl() });
  await client.connect();
  try {
    const { rows } = await client.query<{ owner: string }>('SELECT owner FROM relay_leases WHERE shard = 0 AND owner IS NOT NULL AND expires_at > now()');
    const pid = Number(/-(\d+)-[0-9a-f]+$/.exec(rows[0]?.owner ?? '')?.[1]);
    return context.relays.find((r) => r.pid === pid);
  } finally {
    await client.end();
  }
}

async function judgeControl(context: FaultContext, patch: Record<string, unknown>): Promise<void> {
  const response = await request(`${context.judgeUrl}/_control`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(patch),
  });
  await response.body.text();
}

/** A fault's moment while it runs: when it hit, and when its effect ends if not when fire() returns. */
interface FaultMomentDraft {
  startedAt: number;
  endedAt?: number;
  exitedAt?: number;
}

async function sigterm(context: FaultContext, process: EvalboxProcess, boundMs: number, moment: FaultMomentDraft): Promise<string> {
  await process.waitReady();
  const began = Date.now();
  moment.startedAt = began;
  const record = await process.stop(boundMs);
  moment.exitedAt = Date.now();
  const ms = Date.now() - began;
  const ok = record?.code === 0;
  context.results.push({
    name: `SIGTERM of ${process.name} exits 0 within ${boundMs / 1000} s`,
    figure: record ? `exit ${record.code}${record.signal ? ` (${record.signal})` : ''} after ${ms} ms` : `still running after ${boundMs} ms`,
    ok,
  });
  process.start();
  await process.waitReady();
  return process.name;
}

export async function runFault(name: FaultName, context: FaultContext): Promise<void> {
  context.say(`fault: ${name}`);
  const moment: FaultMomentDraft = { startedAt: Date.now() };
  const target = await fire(name, context, moment);
  context.timeline.push({
    name,
    ...(target === undefined ? {} : { target }),
    startedAt: moment.startedAt,
    endedAt: moment.endedAt ?? Date.now(),
    ...(moment.exitedAt === undefined ? {} : { exitedAt: moment.exitedAt }),
  });
}

/** Fires one fault; `moment.startedAt` is set to when it hit (the signal, the kill). Returns what it hit. */
async function fire(name: FaultName, context: FaultContext, moment: FaultMomentDraft): Promise<string | undefined> {
  const random = seededRandom(context.seed ^ name.length);
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)] as T;
  switch (name) {
    case 'kill-relay-leader': {
      const leader = (await leadingRelay(context)) ?? pick(context.relays);
      moment.startedAt = Date.now();
      await leader.kill9();
      await sleep(1000);
      leader.start();
      await leader.waitReady();
      return leader.name;
    }
    case 'kill-scorer': {
      const scorer = pick(context.scorers);
      moment.startedAt = Date.now();
      await scorer.kill9();
      moment.exitedAt = Date.now();
      await sleep(1000);
      scorer.start();
      await scorer.waitReady();
      return scorer.name;
    }
    case 'kill-broker': {
      const node = pick(context.stack.kafka.nodes).nodeId;
      moment.startedAt = Date.now();
      context.stack.killBroker(node);
      await sleep(10_000);
      await context.stack.restartBroker(node);
      return `broker-${node}`;
    }
    case 'kill-postgres': {
      moment.startedAt = Date.now();
      context.stack.killPostgres();
      await sleep(3000);
      await context.stack.restartPostgres();
      return 'postgres';
    }
    case 'zombie-relay': {
      const leader = (await leadingRelay(context)) ?? pick(context.relays);
      moment.startedAt = Date.now();
      leader.signal('SIGSTOP');
      // Past the default lease (3 s): a standby takes over while the old leader sleeps.
      await sleep(8000);
      leader.signal('SIGCONT');
      return leader.name;
    }
    case 'sigterm-relay':
      return sigterm(context, pick(context.relays), 30_000, moment);
    case 'sigterm-scorer':
      return sigterm(context, pick(context.scorers), 30_000, moment);
    case 'judge-429':
      await judgeControl(context, { mode: 'rate-limit', retryAfterSeconds: 1, durationMs: JUDGE_FAULT_MS });
      moment.endedAt = Date.now() + JUDGE_FAULT_MS;
      return 'fake-judge';
    case 'judge-500':
      await judgeControl(context, { mode: 'error-burst', durationMs: JUDGE_FAULT_MS });
      moment.endedAt = Date.now() + JUDGE_FAULT_MS;
      return 'fake-judge';
    case 'judge-hang':
      await judgeControl(context, { mode: 'hang', fraction: 0.2, hangMs: JUDGE_HANG_MS, durationMs: JUDGE_FAULT_MS });
      // The last request held arrives just before the mode reverts and is answered a hang later.
      moment.endedAt = Date.now() + JUDGE_FAULT_MS + JUDGE_HANG_MS;
      return 'fake-judge';
  }
}
