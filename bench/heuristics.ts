// Micro-benchmark: scorings per second of each heuristic scorer on a realistic input.
//   node --import tsx bench/heuristics.ts
import { HEURISTIC_SCORERS } from '../consumers/heuristics/index.js';
import { machine } from './lib.js';

const input = {
  prompt: 'What is the refund window for EU orders? Answer briefly and cite the policy.',
  response:
    'EU orders can be returned within 30 days of delivery for a full refund. Refunds go to the original payment method within 14 days. Contact support@example.com for help.',
  context: [
    'EU customers may return any order within 30 days of delivery for a full refund.',
    'Refunds are issued to the original payment method within 14 days of receipt.',
  ],
};
const lines = [`heuristics micro-benchmark — ${new Date().toISOString()}`, `machine: ${machine()}`];
// Every scoring gets a prompt and a response it has not seen (a case number), so the parse cache
// shared by the dimensions of one evaluation never answers across evaluations; the context repeats.
const distinct = (i: number) => ({ ...input, prompt: `${input.prompt} (case ${i})`, response: `${input.response} See case ${i}.` });
let seed = 0;
for (const [dimension, scorer] of HEURISTIC_SCORERS) {
  for (let i = 0; i < 500; i++) scorer.score(distinct(seed++)); // warm up
  const n = 5_000;
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) scorer.score(distinct(seed++));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  lines.push(`  ${dimension.padEnd(18)} ${(n / seconds).toFixed(0).padStart(8)} scorings/s  (${((seconds / n) * 1e6).toFixed(1)} µs each)`);
}
// The four default dimensions of one evaluation together, as the scorer runs them.
const defaults = ['groundedness', 'answer_relevance', 'pii_leak', 'toxicity'].map(
  (d) => HEURISTIC_SCORERS.get(d) as NonNullable<ReturnType<typeof HEURISTIC_SCORERS.get>>,
);
const n = 5_000;
const started = process.hrtime.bigint();
for (let i = 0; i < n; i++) {
  const evaluation = distinct(seed++);
  for (const scorer of defaults) scorer.score(evaluation);
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
lines.push(`  4 default dimensions together: ${(n / seconds).toFixed(0)} evaluations/s on one core (${((seconds / n) * 1e6).toFixed(0)} µs each)`);
process.stdout.write(`${lines.join('\n')}\n`);
