// `npm run eval:scorers`: the offline scorers against the labelled cases in bench/scorer-cases/,
// per dimension and per split (dev: used while tuning; holdout: never looked at while tuning).
// Then the cascade (offline first, the judge only for unsure verdicts) on the dimensions that have
// a judge rubric, against the fake judge over HTTP standing in for a model: the share escalated,
// the judge spend against judging everything, and the agreement, read from the Prometheus metrics.
//   node --import tsx bench/eval-scorers.ts [--split dev|holdout|all] [--quiet] [--dimension D] [--no-cascade]
import { parseArgs } from 'node:util';
import { Registry } from 'prom-client';
import {
  cascadeScorer,
  createCascadeEvents,
  DEFAULT_CONFIDENCE_THRESHOLD,
  JUDGE_RUBRIC_FOR,
  registerCascadeMetrics,
  type CascadeDecision,
} from '../consumers/cascade.js';
import { HEURISTIC_SCORERS, type HeuristicScorer } from '../consumers/heuristics/index.js';
import { createJudge, loadJudgeConfig } from '../consumers/judge/index.js';
import { HEURISTIC_DIMENSIONS } from '../src/dimensions.js';
import { startFakeJudge } from '../src/fake-judge/server.js';
import { CLASSES, formatReport, loadCases, report, SPLITS, type LabelledCase, type Split } from './scorer-cases.js';

const { values } = parseArgs({
  options: {
    split: { type: 'string', default: 'all' },
    quiet: { type: 'boolean', default: false },
    dimension: { type: 'string' },
    'no-cascade': { type: 'boolean', default: false },
  },
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
// Each part on its own, then (when both are asked for) the whole set.
const parts: [string, LabelledCase[]][] = splits.map((split) => [split, loadCases(split)]);
if (parts.length > 1) parts.push(['all', parts.flatMap(([, cases]) => cases)]);
for (const [split, cases] of parts) {
  lines.push('', `${split}: ${cases.length} cases (${cases.filter((c) => c.adversarial).length} adversarial)`);
  for (const dimension of Object.keys(CLASSES)) {
    const mine = cases.filter((c) => c.dimension === dimension);
    if (mine.length === 0 || (values.dimension && values.dimension !== dimension)) continue;
    const r = report(
      dimension,
      mine.map((c) => ({ c, ...heuristicVerdict(c) })),
    );
    if (r.balancedAccuracy < 0.85) failedTarget = true;
    lines.push(...formatReport(r, !values.quiet && split !== 'all'));
  }
}
lines.push('', `target: balanced accuracy >= 0.85 per dimension in every part above: ${failedTarget ? 'NOT MET' : 'met'}`);
if (!values['no-cascade']) lines.push('', ...(await cascadeFigures(splits.flatMap(loadCases))));
process.stdout.write(`${lines.join('\n')}\n`);

/** The cascade against the fake judge over HTTP, and the judge alone on the same cases for reference. */
async function cascadeFigures(cases: LabelledCase[]): Promise<string[]> {
  const fake = await startFakeJudge({ latencyMs: 0 });
  // An assumed price for the judge model (USD per million tokens), typical of a mid-size hosted model.
  const price = { inputPerMTok: 3, outputPerMTok: 15 };
  const config = loadJudgeConfig({ EVALBOX_JUDGE_BASE_URL: fake.url, EVALBOX_JUDGE_MODEL: 'fake-judge-1' });
  if (!config) throw new Error('no judge config');
  config.prices = { 'fake-judge-1': price };
  const judge = createJudge({ config });
  const registry = new Registry();
  const events = createCascadeEvents();
  registerCascadeMetrics(registry, events);
  const lines = [
    `cascade: offline first, the judge below confidence ${DEFAULT_CONFIDENCE_THRESHOLD}; judge = the fake judge over HTTP at ${fake.url}`,
    `  (its verdicts are a hash of the request, not a model's reading: agreement and the judge's accuracy say nothing about a real model;`,
    `   the share escalated and the spend are real. Price assumed: $${price.inputPerMTok}/$${price.outputPerMTok} per million input/output tokens.)`,
  ];
  try {
    for (const [dimension] of Object.entries(JUDGE_RUBRIC_FOR)) {
      if (values.dimension && values.dimension !== dimension) continue;
      const heuristic = HEURISTIC_SCORERS.get(dimension) as HeuristicScorer;
      const definition = HEURISTIC_DIMENSIONS.find((d) => d.id === dimension);
      if (!definition) continue;
      const ctx = { judge, events, config: { modes: {}, confidenceThreshold: DEFAULT_CONFIDENCE_THRESHOLD, auditRate: 0 } };
      const cascade = cascadeScorer(ctx, heuristic, definition, 'cascade');
      const judgeOnly = cascadeScorer({ ...ctx, events: createCascadeEvents() }, heuristic, definition, 'judge');
      const mine = cases.filter((c) => c.dimension === dimension);
      let judgeAllUsd = 0;
      let cascadeUsd = 0;
      let offlineCorrectConfident = 0;
      let confident = 0;
      let escalated = 0;
      let ceiling = 0;
      for (const c of mine) {
        const inputs = { prompt: c.prompt, response: c.response, context: c.context ?? null, reference: null, metadata: {} };
        const options = { signal: new AbortController().signal, evaluationId: c.id, applicationId: 'eval' };
        let decision: CascadeDecision | undefined;
        const listener = (d: CascadeDecision) => (decision = d);
        events.once('cascade:decision', listener);
        await cascade.score(inputs, options);
        const all = await judgeOnly.score(inputs, options);
        judgeAllUsd += all.cost_usd ?? 0;
        if (!decision) throw new Error('no cascade decision');
        cascadeUsd += decision.judgeCostUsd;
        const offline = heuristic.score(inputs);
        const classes = CLASSES[dimension] as (typeof CLASSES)[string];
        const offlineCorrect = offline.status === 'COMPLETED' && classes.isPositive(offline.value) === (c.expected === classes.positive);
        if (decision.route === 'offline') {
          confident++;
          if (offlineCorrect) offlineCorrectConfident++;
          if (offlineCorrect) ceiling++;
        } else {
          escalated++;
          ceiling++; // a judge that is right on every escalated case
        }
      }
      const pct = (a: number, b: number) => (b === 0 ? 'n/a' : `${((100 * a) / b).toFixed(0)}%`);
      lines.push(
        `  ${dimension.padEnd(17)} n=${String(mine.length).padStart(3)}  escalated ${escalated} (${pct(escalated, mine.length)})  ` +
          `judge spend $${cascadeUsd.toFixed(5)} vs $${judgeAllUsd.toFixed(5)} judging all (saved ${pct(judgeAllUsd - cascadeUsd, judgeAllUsd)})`,
        `      offline verdicts kept: ${confident}, right on ${offlineCorrectConfident} (${pct(offlineCorrectConfident, confident)}); ` +
          `with a judge right on every escalated case the dimension would score ${pct(ceiling, mine.length)} accuracy`,
      );
    }
  } finally {
    await judge.close();
    await fake.close();
  }
  const metrics = await registry.metrics();
  lines.push('', '  Prometheus metrics of this run:');
  for (const line of metrics.split('\n')) if (line && !line.startsWith('#')) lines.push(`    ${line}`);
  return lines;
}
