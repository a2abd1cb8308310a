// Groundedness: the share of response sentences whose content words are mostly found in the
// context. A sentence is supported when at least 60% of its content terms occur in the context.
import { contentTerms, round, sentences } from './text.js';
import { skipped, type HeuristicOutcome, type ScoringInput } from './types.js';

const SUPPORT_THRESHOLD = 0.6;

export function scoreGroundedness(input: ScoringInput): HeuristicOutcome {
  const context = Array.isArray(input.context) ? input.context.join('\n') : (input.context ?? '');
  if (!context.trim()) return skipped('no context to check the response against');
  const claims = sentences(input.response)
    .map((s) => contentTerms(s))
    .filter((terms) => terms.length > 0);
  if (claims.length === 0) return skipped('the response has no sentences with content words');
  const known = new Set(contentTerms(context));
  const supported = claims.filter((terms) => terms.filter((t) => known.has(t)).length / terms.length >= SUPPORT_THRESHOLD).length;
  const value = round(supported / claims.length);
  const label = value >= 0.8 ? 'grounded' : value >= 0.4 ? 'partially_grounded' : 'ungrounded';
  return { status: 'COMPLETED', value, rawValue: supported, label, reasoning: `${supported} of ${claims.length} sentences are supported by the context` };
}
