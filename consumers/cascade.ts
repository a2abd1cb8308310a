// The cost-aware cascade: per offline dimension, who scores it — the offline scorer alone
// (`heuristic`, the default), the LLM judge's rubric for it (`judge`), or the offline scorer first
// and the judge only where the offline verdict is unsure (`cascade`). Confident offline verdicts
// cost nothing; the uncertain ones are paid for once (through the judge's cache). Every decision
// is an event, so the share escalated, the judge spend saved and the agreement between the
// offline scorer and the judge are metrics (and `npm run eval:scorers` prints them).
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Registry } from 'prom-client';
import { metricsIn } from '../src/metrics.js';
import type { Env } from '../src/config.js';
import type { DimensionDefinition } from '../src/dimensions.js';
import { ConfigError } from '../src/errors.js';
import { HEURISTIC_SCORERS, type HeuristicOutcome, type HeuristicScorer } from './heuristics/index.js';
import type { Judge, JudgeOutcome } from './judge/index.js';
import { heuristicRow, judgeRow } from './score-rows.js';
import type { Scorer, ScoreRow, ScoringInputs } from './scorer.js';

export const SCORING_MODES = ['heuristic', 'judge', 'cascade'] as const;
export type ScoringMode = (typeof SCORING_MODES)[number];

/** The judge rubric that stands behind each offline dimension (PII and the format checks have none). */
export const JUDGE_RUBRIC_FOR: Readonly<Record<string, string>> = {
  groundedness: 'judge_faithfulness',
  answer_relevance: 'judge_relevance',
  toxicity: 'judge_toxicity',
};

/** Offline verdicts at or above this confidence are final; below it the judge decides. */
export const DEFAULT_CONFIDENCE_THRESHOLD = 0.8;

export interface CascadeConfig {
  modes: Record<string, ScoringMode>;
  confidenceThreshold: number;
  /** Share of confident offline verdicts also sent to the judge, to measure agreement where it matters (0 = none). */
  auditRate: number;
}

/**
 * EVALBOX_SCORING_MODES: `cascade` (every dimension that has a judge rubric) or a list such as
 * `groundedness=cascade,toxicity=judge`. EVALBOX_CASCADE_CONFIDENCE (0.8) and
 * EVALBOX_CASCADE_AUDIT_RATE (0). Anything but `heuristic` needs a judge.
 */
export function loadCascadeConfig(env: Env, judge: Pick<Judge, 'dimensions'> | undefined): CascadeConfig {
  const modes: Record<string, ScoringMode> = {};
  const raw = (env.EVALBOX_SCORING_MODES ?? '').trim();
  const entries = SCORING_MODES.includes(raw as ScoringMode) ? Object.keys(JUDGE_RUBRIC_FOR).map((d) => `${d}=${raw}`) : raw.split(',');
  for (const entry of entries.map((e) => e.trim()).filter(Boolean)) {
    const [dimension = '', mode = ''] = entry.split('=').map((s) => s.trim());
    if (!SCORING_MODES.includes(mode as ScoringMode))
      throw new ConfigError(`EVALBOX_SCORING_MODES: "${entry}" must be dimension=${SCORING_MODES.join('|')} or one mode for all`);
    if (mode !== 'heuristic') {
      const rubric = JUDGE_RUBRIC_FOR[dimension];
      if (!rubric) throw new ConfigError(`EVALBOX_SCORING_MODES: "${dimension}" has no judge rubric (only ${Object.keys(JUDGE_RUBRIC_FOR).join(', ')} do)`);
      if (!judge) throw new ConfigError(`EVALBOX_SCORING_MODES: ${dimension}=${mode} needs a judge (EVALBOX_JUDGE_BASE_URL or EVALBOX_JUDGE_CONFIG)`);
      if (!judge.dimensions.some((d) => d.id === rubric))
        throw new ConfigError(`EVALBOX_SCORING_MODES: ${dimension}=${mode} needs the judge rubric ${rubric} enabled`);
    }
    modes[dimension] = mode as ScoringMode;
  }
  const number = (name: string, fallback: number) => {
    const value = env[name] === undefined || env[name] === '' ? fallback : Number(env[name]);
    if (!Number.isFinite(value) || value < 0 || value > 1) throw new ConfigError(`${name} must be a number in [0, 1], got "${String(env[name])}"`);
    return value;
  };
  return { modes, confidenceThreshold: number('EVALBOX_CASCADE_CONFIDENCE', DEFAULT_CONFIDENCE_THRESHOLD), auditRate: number('EVALBOX_CASCADE_AUDIT_RATE', 0) };
}

export interface CascadeDecision {
  dimension: string;
  mode: ScoringMode;
  /** offline: the offline verdict stood; judge: the judge scored it. */
  route: 'offline' | 'judge';
  /** Why the judge was asked: low confidence, an audit sample, or judge mode. */
  reason: 'confident' | 'uncertain' | 'audit' | 'judge_mode' | 'skipped';
  offlineConfidence: number | null;
  /** Whether the offline and the judge verdicts name the same problem (null when only one spoke). */
  agreed: boolean | null;
  /** USD paid to the judge for this decision (0 for a cache hit). */
  judgeCostUsd: number;
  /** An estimate of what the judge would have cost had it been asked (the mean paid call so far). */
  savedUsd: number;
}

export interface CascadeEvents {
  'cascade:decision': [CascadeDecision];
}

/** Whether a value names the dimension's problem (ungrounded, irrelevant, toxic). */
export function flagsProblem(dimension: string, source: 'offline' | 'judge', value: number): boolean {
  // The offline groundedness value is the share of supported claims: any unsupported claim is a problem.
  if (dimension === 'groundedness' && source === 'offline') return value < 0.999;
  return dimension === 'toxicity' || dimension === 'pii_leak' ? value >= 0.5 : value < 0.5;
}

const auditFraction = (evaluationId: string, dimension: string) =>
  createHash('sha256').update(`audit|${evaluationId}|${dimension}`).digest().readUInt32BE(0) / 2 ** 32;

function cascadeJudgeRow(
  dimension: string,
  definition: DimensionDefinition,
  name: string,
  version: string,
  outcome: JudgeOutcome,
  offline?: HeuristicOutcome,
): ScoreRow {
  const columns = judgeRow(outcome);
  const offlineNote = offline?.status === 'COMPLETED' ? ` [offline scorer: ${offline.label} ${offline.value}, confidence ${offline.confidence}]` : '';
  return {
    ...columns,
    dimension,
    direction: definition.direction,
    scorer_name: name,
    scorer_version: version,
    reasoning: columns.reasoning === null || columns.reasoning === undefined ? null : `${columns.reasoning}${offlineNote}`.slice(0, 4000),
  };
}

export interface CascadeContext {
  judge: Judge;
  config: CascadeConfig;
  events: EventEmitter<CascadeEvents>;
}

/** One dimension's scorer under its mode (`judge` or `cascade`). */
export function cascadeScorer(ctx: CascadeContext, heuristic: HeuristicScorer, definition: DimensionDefinition, mode: 'judge' | 'cascade'): Scorer {
  const rubric = JUDGE_RUBRIC_FOR[definition.id] as string;
  const rubricVersion = ctx.judge.dimensions.find((d) => d.id === rubric)?.scorerVersion ?? '1';
  // The version names both halves and the threshold, so changing any of them re-scores.
  const version = mode === 'judge' ? `judge-${rubricVersion}` : `${heuristic.version}+judge-${rubricVersion}@${ctx.config.confidenceThreshold}`;
  const name = `${mode}-${heuristic.name.replace(/^heuristic-/, '')}`;
  let paidCalls = 0;
  let paidUsd = 0;
  const meanCost = () => (paidCalls === 0 ? 0 : paidUsd / paidCalls);
  const decide = (d: Omit<CascadeDecision, 'dimension' | 'mode'>) => ctx.events.emit('cascade:decision', { dimension: definition.id, mode, ...d });

  return {
    dimension: definition.id,
    name,
    version,
    async score(inputs: ScoringInputs, { signal, evaluationId, applicationId }) {
      const started = performance.now();
      const offline = mode === 'cascade' ? heuristic.score(inputs) : undefined;
      const offlineLatency = performance.now() - started;
      if (offline?.status === 'SKIPPED') {
        decide({ route: 'offline', reason: 'skipped', offlineConfidence: null, agreed: null, judgeCostUsd: 0, savedUsd: 0 });
        return heuristicRow({ ...heuristic, version }, definition, offline, offlineLatency, true);
      }
      const confident = offline?.status === 'COMPLETED' && offline.confidence >= ctx.config.confidenceThreshold;
      const audit = confident && ctx.config.auditRate > 0 && auditFraction(evaluationId, definition.id) < ctx.config.auditRate;
      if (offline?.status === 'COMPLETED' && confident && !audit) {
        decide({ route: 'offline', reason: 'confident', offlineConfidence: offline.confidence, agreed: null, judgeCostUsd: 0, savedUsd: meanCost() });
        return heuristicRow({ ...heuristic, version }, definition, offline, offlineLatency, true);
      }
      const outcome = await ctx.judge.score(rubric, inputs, { signal, applicationId });
      if (outcome.status === 'SKIPPED' && offline) return heuristicRow({ ...heuristic, version }, definition, offline, offlineLatency, true);
      const cost = outcome.costUsd ?? 0;
      if (!outcome.cacheHit && outcome.costUsd !== null) {
        paidCalls++;
        paidUsd += cost;
      }
      const agreed =
        offline?.status === 'COMPLETED' && outcome.status === 'COMPLETED' && outcome.value !== null
          ? flagsProblem(definition.id, 'offline', offline.value) === flagsProblem(definition.id, 'judge', outcome.value)
          : null;
      decide({
        route: 'judge',
        reason: mode === 'judge' ? 'judge_mode' : audit ? 'audit' : 'uncertain',
        offlineConfidence: offline?.status === 'COMPLETED' ? offline.confidence : null,
        agreed,
        judgeCostUsd: cost,
        savedUsd: 0,
      });
      // An audited confident verdict still stands: the audit measures, it does not overrule.
      if (audit && offline) return heuristicRow({ ...heuristic, version }, definition, offline, offlineLatency, true);
      return cascadeJudgeRow(definition.id, definition, name, version, outcome, offline);
    },
  };
}

/** Replaces the offline scorers of the dimensions configured `judge` or `cascade`. */
export function applyScoringModes(scorers: Map<string, Scorer>, definitions: DimensionDefinition[], ctx: CascadeContext | undefined): Map<string, Scorer> {
  if (!ctx) return scorers;
  for (const [dimension, mode] of Object.entries(ctx.config.modes)) {
    const heuristic = HEURISTIC_SCORERS.get(dimension);
    const definition = definitions.find((d) => d.id === dimension);
    if (mode === 'heuristic' || !heuristic || !definition) continue;
    scorers.set(dimension, cascadeScorer(ctx, heuristic, definition, mode));
  }
  return scorers;
}

export function createCascadeEvents(): EventEmitter<CascadeEvents> {
  return new EventEmitter<CascadeEvents>();
}

/** Prometheus metrics of the cascade's decisions. */
export function registerCascadeMetrics(registry: Registry, events: EventEmitter<CascadeEvents>): void {
  const metric = metricsIn(registry);
  const decisions = metric.counter(
    'evalbox_cascade_decisions_total',
    'Scoring decisions per dimension: route offline (the offline verdict stood) or judge (escalated), and why.',
    ['dimension', 'mode', 'route', 'reason'],
  );
  const agreement = metric.counter(
    'evalbox_cascade_agreement_total',
    'Escalated decisions where the offline scorer and the judge both gave a verdict: agreed true or false.',
    ['dimension', 'agreed'],
  );
  const spent = metric.counter('evalbox_cascade_judge_spend_usd_total', 'USD paid to the judge by the cascade.', ['dimension']);
  const saved = metric.counter(
    'evalbox_cascade_judge_spend_saved_usd_total',
    'Estimated USD not paid to the judge because the offline verdict was confident (the mean paid call of the dimension so far, per decision).',
    ['dimension'],
  );
  events.on('cascade:decision', (d) => {
    decisions.inc({ dimension: d.dimension, mode: d.mode, route: d.route, reason: d.reason });
    if (d.agreed !== null) agreement.inc({ dimension: d.dimension, agreed: String(d.agreed) });
    if (d.judgeCostUsd > 0) spent.inc({ dimension: d.dimension }, d.judgeCostUsd);
    if (d.savedUsd > 0) saved.inc({ dimension: d.dimension }, d.savedUsd);
  });
}
