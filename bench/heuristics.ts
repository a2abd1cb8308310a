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
for (const [dimension, scorer] of HEURISTIC_SCORERS) {
  for (let i = 0; i < 2000; i++) scorer.score(input); // warm up
  const n = 20_000;
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) scorer.score(input);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  lines.push(`  ${dimension.padEnd(18)} ${(n / seconds).toFixed(0).padStart(8)} scorings/s  (${((seconds / n) * 1e6).toFixed(1)} µs each)`);
}
process.stdout.write(`${lines.join('\n')}\n`);
