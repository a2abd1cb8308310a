// The small chaos run of the suite: the whole platform (API, two relays, two scorers, the fake
// judge) on a private Postgres and Kafka broker, 5,000 evaluations from 16 applications with a
// fixed seed, under every fault the full run fires (kill -9 of the leading relay, of a scorer, of
// the broker and of Postgres; a zombie relay; SIGTERM of a relay and of a scorer; judge 429s,
// 500s and hangs). Each guarantee is checked on the run's invariants, computed from the driver's
// own record, SQL and kcat (see docs/chaos.md); `npm run chaos` is the full-size run.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { runChaos, type ChaosResult } from './chaos/chaos.js';
import { formatTable, type Invariant } from './chaos/invariants.js';

const COUNT = Number(process.env.EVALBOX_CHAOS_COUNT ?? 5000);
const SEED = Number(process.env.EVALBOX_CHAOS_SEED ?? 2);

describe(`chaos run: ${COUNT} evaluations, one broker, seed ${SEED}`, () => {
  let result: ChaosResult;
  const invariant = (prefix: string): Invariant[] => {
    const found = result.invariants.filter((i) => i.name.startsWith(prefix));
    if (found.length === 0) throw new Error(`no invariant "${prefix}" in:\n${formatTable(result.invariants)}`);
    return found;
  };
  /** Each invariant holds; a failure shows its figure, and the whole table with the run's summary. */
  const expectHolds = (prefix: string) => {
    for (const i of invariant(prefix)) {
      const seen = i.ok ? `PASS ${i.name}` : `FAIL ${i.name}: ${i.figure}\n\n${formatTable(result.invariants)}\n${result.summary}`;
      expect(seen).toBe(`PASS ${i.name}`);
    }
  };

  beforeAll(async () => {
    result = await runChaos({
      count: COUNT,
      seed: SEED,
      brokers: 1,
      apps: 16,
      durationSeconds: 900,
      drainSeconds: 300,
      keep: false,
      say: (line) => process.stderr.write(`chaos: ${line}\n`),
    });
    process.stderr.write(`\n${formatTable(result.invariants)}\n\n${result.summary}\n`);
  }, 1_500_000);
  afterAll(() => {
    if (result && !result.ok) process.stderr.write(`chaos: logs kept in ${result.logDir}\n`);
  });

  it('guarantee 1: every 202 has its evaluation row and its outbox event, nothing accepted is lost', () => {
    expectHolds('accepted (202)');
  });

  it('guarantee 2: every outbox event reaches Kafka, in per-application sequence order', () => {
    expectHolds('outbox events published');
    expectHolds('per-key order on Kafka');
  });

  it('guarantee 3: every evaluation is terminal after the drain', () => {
    expectHolds('evaluations not terminal');
  });

  it('guarantee 4: one distinct scored result per evaluation, and no judge payment beyond what the kills explain', () => {
    expectHolds('evaluation.scored');
    expectHolds('paid judge calls');
  });

  it('guarantees 5 and 7: SIGTERM of a relay and of a scorer exits 0 within the grace period; no process dies on its own', () => {
    expect(invariant('SIGTERM of')).toHaveLength(2);
    expectHolds('SIGTERM of');
    expectHolds('processes that exited');
  });
});
