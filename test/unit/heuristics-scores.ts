// Prints, as JSON, every heuristic scorer's outcome on every labelled case of bench/scorer-cases/,
// in the order given (`forward` or `reverse`). Run in a fresh process by the determinism test, so
// the outcomes it prints share no module state (caches, regular expressions) with the test's own.
import { HEURISTIC_SCORERS } from '../../consumers/heuristics/index.js';
import { loadCases, SPLITS } from '../../bench/scorer-cases.js';

export function scoreLabelledCases(order: 'forward' | 'reverse'): Record<string, unknown> {
  const cases = SPLITS.flatMap((split) => loadCases(split));
  if (order === 'reverse') cases.reverse();
  const outcomes: Record<string, unknown> = {};
  for (const c of cases)
    for (const [dimension, scorer] of HEURISTIC_SCORERS)
      outcomes[`${c.id}|${dimension}`] = scorer.score({ prompt: c.prompt, response: c.response, context: c.context ?? null });
  return outcomes;
}

if (process.argv[1]?.endsWith('heuristics-scores.ts'))
  process.stdout.write(JSON.stringify(scoreLabelledCases(process.argv[2] === 'reverse' ? 'reverse' : 'forward')));
