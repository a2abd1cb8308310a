// Length band: whether the response's word count sits in a band suited to the prompt. Default
// band 3..400 words; "in one sentence"/"briefly" narrow it, "in N words" centres it on N,
// "detailed"/"explain in detail" widen it. Inside: 1; outside: decays with the distance.
import { round, words } from './text.js';
import type { HeuristicOutcome, ScoringInput } from './types.js';

export function bandFor(prompt: string): { min: number; max: number; why: string } {
  const p = prompt.toLowerCase();
  const n = /\b(?:in|within|under|about|at most|max(?:imum)?)\s+(\d{1,4})\s+words?\b/.exec(p);
  if (n) {
    const target = Number(n[1]);
    return { min: Math.max(1, Math.floor(target * 0.5)), max: Math.ceil(target * 1.5), why: `asked for about ${target} words` };
  }
  if (/\b(?:one|a single|1) sentence\b/.test(p)) return { min: 2, max: 40, why: 'asked for one sentence' };
  if (/\b(?:briefly|brief|short|concise|tl;?dr|one word|yes or no)\b/.test(p)) return { min: 1, max: 80, why: 'asked for a short answer' };
  if (/\b(?:detailed|in detail|in depth|comprehensive|thorough|step by step)\b/.test(p)) return { min: 40, max: 1500, why: 'asked for detail' };
  return { min: 1, max: 400, why: 'default band' };
}

export function scoreLengthBand(input: ScoringInput): HeuristicOutcome {
  const count = words(input.response).length;
  const band = bandFor(input.prompt);
  if (count >= band.min && count <= band.max) {
    return {
      status: 'COMPLETED',
      value: 1,
      rawValue: count,
      label: 'ok',
      reasoning: `${count} words, inside ${band.min}..${band.max} (${band.why})`,
      confidence: 1,
    };
  }
  const tooShort = count < band.min;
  const distance = tooShort ? (band.min - count) / band.min : (count - band.max) / band.max;
  const value = round(Math.max(0, 1 - distance));
  return {
    status: 'COMPLETED',
    value,
    rawValue: count,
    label: tooShort ? 'too_short' : 'too_long',
    reasoning: `${count} words, outside ${band.min}..${band.max} (${band.why})`,
    confidence: 1,
  };
}
