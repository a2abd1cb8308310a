// Answer relevance: how many of the prompt's key terms the response covers; a refusal scores 0.
import { contentTerms, round } from './text.js';
import { skipped, type HeuristicOutcome, type ScoringInput } from './types.js';

const REFUSALS = [
  /\bi(?:'m| am)? (?:sorry,? )?(?:but )?(?:i )?(?:can(?:no|')t|cannot|am unable to|won't|will not|am not able to) (?:help|assist|answer|provide|do that|comply)/i,
  /\bas an ai(?: language model)?,? i (?:can(?:no|')t|cannot|don't|do not|am unable)/i,
  /\bi(?:'m| am) (?:unable|not able) to (?:help|assist|answer|provide)/i,
  /\bi (?:must|have to) (?:decline|refuse)/i,
];

export function isRefusal(response: string): boolean {
  return REFUSALS.some((pattern) => pattern.test(response));
}

export function scoreAnswerRelevance(input: ScoringInput): HeuristicOutcome {
  if (!input.response.trim()) return { status: 'COMPLETED', value: 0, rawValue: 0, label: 'empty', reasoning: 'the response is empty' };
  if (isRefusal(input.response)) return { status: 'COMPLETED', value: 0, rawValue: 0, label: 'refusal', reasoning: 'the response refuses to answer' };
  const promptTerms = [...new Set(contentTerms(input.prompt))];
  if (promptTerms.length === 0) return skipped('the prompt has no key terms to cover');
  const responseTerms = new Set(contentTerms(input.response));
  const covered = promptTerms.filter((t) => responseTerms.has(t)).length;
  // Answers rarely repeat every word of the question: full marks from 60% coverage.
  const value = round(Math.min(1, covered / promptTerms.length / 0.6));
  const label = value >= 0.8 ? 'relevant' : value >= 0.4 ? 'partially_relevant' : 'off_topic';
  return {
    status: 'COMPLETED',
    value,
    rawValue: covered / promptTerms.length,
    label,
    reasoning: `covers ${covered} of ${promptTerms.length} key terms of the prompt`,
  };
}
