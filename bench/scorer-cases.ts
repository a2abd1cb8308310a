// The labelled scorer cases (bench/scorer-cases/*.jsonl) and how a score is read as a verdict.
// Each case names the class a careful reader would give it; the positive class of each dimension
// is the problem a scorer is there to find (ungrounded, irrelevant, PII, toxic, invalid JSON).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface LabelledCase {
  id: string;
  dimension: string;
  adversarial: boolean;
  expected: string;
  prompt: string;
  response: string;
  context?: string | string[];
}

export const SPLITS = ['dev', 'holdout'] as const;
export type Split = (typeof SPLITS)[number];

/** Per dimension: the problem class (positive), the fine class, and how a [0, 1] value reads. */
export const CLASSES: Record<string, { positive: string; negative: string; isPositive: (value: number) => boolean }> = {
  // A response with any unsupported claim is ungrounded: the value is the share of supported claims.
  groundedness: { positive: 'ungrounded', negative: 'grounded', isPositive: (v) => v < 0.999 },
  answer_relevance: { positive: 'irrelevant', negative: 'relevant', isPositive: (v) => v < 0.5 },
  pii_leak: { positive: 'pii', negative: 'clean', isPositive: (v) => v >= 0.5 },
  toxicity: { positive: 'toxic', negative: 'clean', isPositive: (v) => v >= 0.5 },
  json_validity: { positive: 'invalid', negative: 'valid', isPositive: (v) => v < 0.5 },
};

const directory = path.join(path.dirname(fileURLToPath(import.meta.url)), 'scorer-cases');

export function loadCases(split: Split): LabelledCase[] {
  return fs
    .readFileSync(path.join(directory, `${split}.jsonl`), 'utf8')
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line) as LabelledCase);
}

export interface Confusion {
  tp: number;
  fp: number;
  tn: number;
  fn: number;
}

export interface DimensionReport {
  dimension: string;
  cases: number;
  confusion: Confusion;
  accuracy: number;
  balancedAccuracy: number;
  precision: number;
  recall: number;
  wrong: { id: string; expected: string; predicted: string; detail: string }[];
}

const ratio = (a: number, b: number) => (b === 0 ? NaN : a / b);

/** Metrics of one dimension from (expected, predicted) pairs; predicted is a class name. */
export function report(dimension: string, results: { c: LabelledCase; predicted: string; detail: string }[]): DimensionReport {
  const { positive } = CLASSES[dimension] as (typeof CLASSES)[string];
  const confusion: Confusion = { tp: 0, fp: 0, tn: 0, fn: 0 };
  const wrong: DimensionReport['wrong'] = [];
  for (const { c, predicted, detail } of results) {
    const actual = c.expected === positive;
    const flagged = predicted === positive;
    if (actual && flagged) confusion.tp++;
    else if (actual) confusion.fn++;
    else if (flagged) confusion.fp++;
    else confusion.tn++;
    if (actual !== flagged) wrong.push({ id: c.id, expected: c.expected, predicted, detail });
  }
  const recall = ratio(confusion.tp, confusion.tp + confusion.fn);
  const specificity = ratio(confusion.tn, confusion.tn + confusion.fp);
  return {
    dimension,
    cases: results.length,
    confusion,
    accuracy: ratio(confusion.tp + confusion.tn, results.length),
    balancedAccuracy: (recall + specificity) / 2,
    precision: ratio(confusion.tp, confusion.tp + confusion.fp),
    recall,
    wrong,
  };
}

const f = (x: number) => (Number.isNaN(x) ? '  n/a' : x.toFixed(2).padStart(5));

export function formatReport(r: DimensionReport, showWrong: boolean): string[] {
  const { positive, negative } = CLASSES[r.dimension] as (typeof CLASSES)[string];
  const { tp, fp, tn, fn } = r.confusion;
  const lines = [
    `  ${r.dimension.padEnd(17)} n=${String(r.cases).padStart(3)}  accuracy ${f(r.accuracy)}  balanced ${f(r.balancedAccuracy)}  precision ${f(r.precision)}  recall ${f(r.recall)}`,
    `      confusion (rows: labelled, columns: scored)   ${positive.padStart(11)} ${negative.padStart(11)}`,
    `      ${positive.padEnd(44)} ${String(tp).padStart(11)} ${String(fn).padStart(11)}`,
    `      ${negative.padEnd(44)} ${String(fp).padStart(11)} ${String(tn).padStart(11)}`,
  ];
  if (showWrong) for (const w of r.wrong) lines.push(`      wrong ${w.id}: labelled ${w.expected}, scored ${w.predicted} — ${w.detail}`);
  return lines;
}
