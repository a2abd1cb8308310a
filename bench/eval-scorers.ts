// `npm run eval:scorers`: the offline scorers against the labelled cases in bench/scorer-cases/,
// per dimension and per split (dev: used while tuning; holdout: never looked at while tuning).
//   node --import tsx bench/eval-scorers.ts [--split dev|holdout|all] [--quiet]
import { parseArgs } from 'node:util';
import { HEURISTIC_SCORERS } from '../consumers/heuristics/index.js';
import { CLASSES, formatReport, loadCases, report, SPLITS, type LabelledCase, type Split } from './scorer-cases.js';

const { values } = parseArgs({
  options: { split: { type: 'string', default: 'all' }, quiet: { type: 'boolean', default: false }, dimension: { type: 'string' } },
});
const splits: Split[] = values.split === 'all' ? [...SPLITS] : [values.split as Split];

function heuristicVerdict(c: LabelledCase): { predicted: string; detail: string } {
  const scorer = HEURISTIC_SCORERS.get(c.dimension);
  if (!scorer) throw new Error(`no scorer for ${c.dimension}`);
  const outcome = scorer.score({ prompt: c.prompt, response: c.response, context: c.context ?? null });
  const classes = CLASSES[c.dimension] as (typeof CLASSES)[string];
  if (outcome.status === 'SKIPPED') return { predicted: 'skipped', detail: outcome.reasoning };
  const predicted = classes.isPositive(outcome.value) ? classes.positive : classes.negative;
  const confidence = 'confidence' in outcome ? ` confidence ${String(outcome.confidence)}` : '';
  return { predicted, detail: `${outcome.label} ${outcome.value}${confidence}: ${outcome.reasoning}` };
}

const lines: string[] = [`offline scorers against the labelled cases — ${new Date().toISOString()}`];
let failedTarget = false;
for (const split of splits) {
  const cases = loadCases(split);
  lines.push('', `${split}: ${cases.length} cases (${cases.filter((c) => c.adversarial).length} adversarial)`);
  for (const dimension of Object.keys(CLASSES)) {
    const mine = cases.filter((c) => c.dimension === dimension);
    if (mine.length === 0 || (values.dimension && values.dimension !== dimension)) continue;
    const r = report(
      dimension,
      mine.map((c) => ({ c, ...heuristicVerdict(c) })),
    );
    if (r.balancedAccuracy < 0.85) failedTarget = true;
    lines.push(...formatReport(r, !values.quiet));
  }
}
lines.push('', `target: balanced accuracy >= 0.85 per dimension: ${failedTarget ? 'NOT MET' : 'met'}`);
process.stdout.write(`${lines.join('\n')}\n`);
