// Shared English analysis for the offline scorers, on wink-nlp with its English lite model (the
// model ships inside the npm package: nothing is downloaded). One parse per distinct text, kept in
// a small LRU, so the dimensions of one evaluation (and repeated contexts) share it.
import winkNLP, { type WinkMethods } from 'wink-nlp';
import model from 'wink-eng-lite-web-model';

export interface Token {
  /** As written. */
  text: string;
  /** Lower-cased lemma, folded further by a light stemmer: the key used for matching. */
  key: string;
  lemma: string;
  /** Universal POS tag (NOUN, VERB, PROPN, NUM, ...). */
  pos: string;
  /** wink's token type: word, number, punctuation, email, url, currency, ... */
  type: string;
  stop: boolean;
}

export interface Sentence {
  text: string;
  tokens: Token[];
}

export interface Analysis {
  sentences: Sentence[];
  tokens: Token[];
}

let nlp: WinkMethods | undefined;
const its = () => (nlp as WinkMethods).its;

function instance(): WinkMethods {
  // Loading the model takes a few hundred milliseconds: done once, on first use.
  nlp ??= winkNLP(model, ['sbd', 'pos']);
  return nlp;
}

/** A crude suffix folding on top of the lemma, so "shipping"/"ship" and "licensed"/"license" meet. */
export function fold(word: string): string {
  let w = word.toLowerCase().replace(/['’]s$/, '');
  if (w.length <= 3 || !/^[a-z]+$/.test(w)) return w;
  for (const suffix of ['ing', 'ed', 'es', 's', 'e', 'ly']) {
    if (w.endsWith(suffix) && w.length - suffix.length >= 3) {
      w = w.slice(0, -suffix.length);
      break;
    }
  }
  return w;
}

const CACHE_SIZE = 512;
const cache = new Map<string, Analysis>();

export function analyse(text: string): Analysis {
  const hit = cache.get(text);
  if (hit) {
    cache.delete(text); // most recently used last
    cache.set(text, hit);
    return hit;
  }
  const analysis = parse(text);
  cache.set(text, analysis);
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value as string);
  return analysis;
}

function parse(text: string): Analysis {
  const doc = instance().readDoc(text);
  const i = its();
  // wink's `its` members are selector functions (compared by identity), not methods using `this`.
  /* eslint-disable @typescript-eslint/unbound-method */
  const values: string[] = doc.tokens().out(i.value);
  const lemmas = doc.tokens().out(i.lemma as never) as unknown as string[];
  const tags: string[] = doc.tokens().out(i.pos);
  const types: string[] = doc.tokens().out(i.type);
  const stops = doc.tokens().out(i.stopWordFlag) as unknown as boolean[];
  const spans = doc.sentences().out(i.span) as unknown as [number, number][];
  /* eslint-enable @typescript-eslint/unbound-method */
  const tokens: Token[] = values.map((value, n) => {
    const lemma = (lemmas[n] ?? value).toLowerCase();
    return { text: value, lemma, key: fold(lemma), pos: tags[n] ?? 'X', type: types[n] ?? 'word', stop: Boolean(stops[n]) };
  });
  const sentenceTexts: string[] = doc.sentences().out();
  const sentences = spans.map(([start, end], n) => ({ text: sentenceTexts[n] ?? '', tokens: tokens.slice(start, end + 1) }));
  return { sentences, tokens };
}

const NUMBER_WORDS: Record<string, number> = {
  zero: 0,
  one: 1,
  two: 2,
  three: 3,
  four: 4,
  five: 5,
  six: 6,
  seven: 7,
  eight: 8,
  nine: 9,
  ten: 10,
  eleven: 11,
  twelve: 12,
  thirteen: 13,
  fourteen: 14,
  fifteen: 15,
  sixteen: 16,
  seventeen: 17,
  eighteen: 18,
  nineteen: 19,
  twenty: 20,
  thirty: 30,
  forty: 40,
  fifty: 50,
  sixty: 60,
  seventy: 70,
  eighty: 80,
  ninety: 90,
  hundred: 100,
  thousand: 1000,
  million: 1_000_000,
  billion: 1_000_000_000,
  dozen: 12,
};

/** The numbers a text states, normalised ("8,849" → "8849", "nine" → "9", "9am" → "9"). */
export function numbersIn(tokens: Token[]): string[] {
  const found: string[] = [];
  for (const t of tokens) {
    const word = t.text.toLowerCase();
    if (NUMBER_WORDS[word] !== undefined && t.pos === 'NUM') found.push(String(NUMBER_WORDS[word]));
    else if (/\d/.test(word)) for (const n of word.replace(/(\d),(\d{3})/g, '$1$2').match(/\d+(?:\.\d+)?/g) ?? []) found.push(String(Number(n)));
  }
  return found;
}

export const MONTHS_AND_DAYS = new Set(
  'january february march april may june july august september october november december monday tuesday wednesday thursday friday saturday sunday'.split(' '),
);
