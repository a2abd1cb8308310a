// Groundedness, a heuristic pre-filter: each sentence of the response is a claim, checked against
// the context. A claim is contradicted when it states a number, a date word or a name the context
// does not have, when its polarity (negation) differs from the context sentence it matches best,
// or when it widens an "only" of that sentence to "any"/"all". It is supported when no such
// conflict exists and most of its content words occur in the context. Value: the share of
// supported claims. Known limits (docs/consumers.md): paraphrases with other words, numbers
// bound to the wrong thing within one sentence, facts implied rather than stated.
import { analyse, MONTHS_AND_DAYS, numbersIn, type Sentence, type Token } from './nlp.js';
import { round } from './text.js';
import { skipped, type HeuristicOutcome, type ScoringInput } from './types.js';

const CONTENT_POS = new Set(['NOUN', 'PROPN', 'VERB', 'ADJ', 'ADV', 'NUM']);
// Verbs that carry little meaning of their own, and words that only frame a claim.
const LIGHT = new Set(
  'be have do get make can could may might will would shall should must also still now just really very well here there it its this that these those such up'.split(
    ' ',
  ),
);
const NEGATIONS = new Set(['not', "n't", 'no', 'never', 'none', 'nobody', 'nothing', 'neither', 'nor', 'cannot', 'without']);
// Verbs whose meaning includes a negation ("avoid X" = "do not X", "removed support" = "no support").
const NEGATIVE_VERBS = new Set(['avoid', 'refuse', 'lack', 'fail', 'prohibit', 'forbid', 'prevent', 'deny', 'remove', 'drop', 'discontinue', 'ban', 'exclude']);
const RESTRICTIVE = new Set(['only', 'solely', 'exclusively']);
const UNIVERSAL = new Set(['any', 'all', 'every', 'everyone', 'anyone', 'everybody', 'anybody']);
// Unit symbols and their spelled-out names meet on one key.
const UNITS: Record<string, string> = {
  m: 'metre',
  meter: 'metre',
  metres: 'metre',
  km: 'kilometre',
  '°c': 'celsius',
  '°f': 'fahrenheit',
  '%': 'percent',
  $: 'dollar',
  '€': 'euro',
  '£': 'pound',
};

const SUPPORTED_COVERAGE = 0.6;

interface Claim {
  text: string;
  keys: string[];
  numbers: string[];
  names: string[];
  negations: number;
  universal: boolean;
}

const keyOf = (t: Token) => UNITS[t.text.toLowerCase()] ?? t.key;
const isNegation = (t: Token) => NEGATIONS.has(t.text.toLowerCase()) || NEGATIONS.has(t.lemma) || NEGATIVE_VERBS.has(t.lemma);

function contentKeys(tokens: Token[]): string[] {
  return tokens
    .filter((t) => (CONTENT_POS.has(t.pos) || t.type === 'number' || t.type === 'currency') && !isNegation(t))
    .filter((t) => !LIGHT.has(t.lemma) && !(t.stop && t.pos !== 'NUM') && !UNIVERSAL.has(t.lemma) && !RESTRICTIVE.has(t.lemma))
    .flatMap((t) => keyOf(t).split(/[-–—/]/))
    .filter((k) => k.length > 0);
}

function claimOf(sentence: Sentence): Claim {
  const tokens = sentence.tokens;
  const names = tokens
    .filter((t) => /^\p{Lu}/u.test(t.text) && (t.pos === 'PROPN' || MONTHS_AND_DAYS.has(t.text.toLowerCase())))
    .flatMap((t) => t.text.toLowerCase().split(/[-–—]/))
    .filter((n) => /^\p{L}{2,}$/u.test(n) && UNITS[n] === undefined);
  return {
    text: sentence.text,
    keys: contentKeys(tokens),
    numbers: numbersIn(tokens),
    names,
    negations: tokens.filter(isNegation).length,
    universal: tokens.some((t) => UNIVERSAL.has(t.lemma)),
  };
}

interface Verdict {
  supported: boolean;
  confidence: number;
  why: string;
}

function judgeClaim(claim: Claim, context: Claim[], contextKeys: Set<string>, contextNumbers: Set<string>, contextWords: Set<string>): Verdict {
  const missingNumber = claim.numbers.find((n) => !contextNumbers.has(n));
  if (missingNumber !== undefined) return { supported: false, confidence: 0.9, why: `states ${missingNumber}, which the context does not` };
  const missingName = claim.names.find((n) => !contextWords.has(n));
  if (missingName !== undefined) return { supported: false, confidence: 0.85, why: `names "${missingName}", which the context does not` };
  // The context sentence this claim is about: the one sharing most content words with it.
  let best: Claim | undefined;
  let bestShared = 0;
  for (const sentence of context) {
    const keys = new Set(sentence.keys);
    const shared = claim.keys.filter((k) => keys.has(k)).length;
    if (shared > bestShared) [best, bestShared] = [sentence, shared];
  }
  if (best && bestShared >= 2 && best.negations % 2 !== claim.negations % 2)
    return { supported: false, confidence: 0.85, why: `negation differs from the context ("${best.text}")` };
  if (best && bestShared >= 2 && claim.universal && best.text.split(/\W+/).some((w) => RESTRICTIVE.has(w.toLowerCase())))
    return { supported: false, confidence: 0.8, why: `widens "only" in the context to everyone` };
  if (claim.keys.length === 0) return { supported: true, confidence: 0.6, why: 'no content words to check' };
  const coverage = claim.keys.filter((k) => contextKeys.has(k)).length / claim.keys.length;
  const supported = coverage >= SUPPORTED_COVERAGE;
  // Far from the threshold either way is a confident verdict; near it, a paraphrase or an
  // addition could go either way.
  const confidence = supported ? (coverage >= 0.85 ? 0.85 : 0.6) : coverage < 0.3 ? 0.8 : 0.55;
  return { supported, confidence, why: `${Math.round(coverage * 100)}% of its content words are in the context` };
}

export function scoreGroundedness(input: ScoringInput): HeuristicOutcome {
  const contextText = Array.isArray(input.context) ? input.context.join('\n') : (input.context ?? '');
  if (!contextText.trim()) return skipped('no context to check the response against');
  const claims = analyse(input.response)
    .sentences.map(claimOf)
    .filter((c) => c.keys.length > 0 || c.numbers.length > 0);
  if (claims.length === 0) return skipped('the response has no sentences with content words');
  const contextParts = Array.isArray(input.context) ? input.context : [contextText];
  const context = contextParts.flatMap((part) => analyse(part).sentences.map(claimOf));
  const contextKeys = new Set(context.flatMap((c) => c.keys));
  const contextNumbers = new Set(context.flatMap((c) => c.numbers));
  const contextWords = new Set(
    contextParts.flatMap((part) => analyse(part).tokens.flatMap((t) => [t.text.toLowerCase(), t.lemma, ...t.text.toLowerCase().split(/[-–—]/)])),
  );
  const verdicts = claims.map((claim) => ({ claim, ...judgeClaim(claim, context, contextKeys, contextNumbers, contextWords) }));
  const supported = verdicts.filter((v) => v.supported).length;
  const value = round(supported / claims.length);
  const label = supported === claims.length ? 'grounded' : supported === 0 ? 'ungrounded' : 'partially_grounded';
  const unsupported = verdicts.filter((v) => !v.supported);
  const reasons = (unsupported.length ? unsupported : verdicts).slice(0, 3).map((v) => `"${v.claim.text.slice(0, 80)}" ${v.why}`);
  return {
    status: 'COMPLETED',
    value,
    rawValue: supported,
    label,
    confidence: round(Math.min(...verdicts.map((v) => v.confidence)), 2),
    reasoning: `${supported} of ${claims.length} claims supported by the context; ${reasons.join('; ')}`,
  };
}
