// Text helpers shared by the heuristic scorers: sentence splitting, content words, light stemming.
const STOP_WORDS = new Set(
  (
    'a an and are as at be been but by can could did do does for from had has have he her his how i if in into is it its ' +
    'me my no not of on or our she should so than that the their them then there these they this those to was we were ' +
    'what when where which who why will with would you your about also any all just more most other some such only own ' +
    'same too very s t don now please tell give explain describe answer question'
  ).split(' '),
);

export function sentences(text: string): string[] {
  return text
    .split(/(?<=[.!?])\s+|\n+/u)
    .map((s) => s.trim())
    .filter((s) => /\p{L}|\p{N}/u.test(s));
}

/** Lower-cased words of letters/digits, Unicode-aware. */
export function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+(?:['’][\p{L}]+)?/gu) ?? [];
}

/** A crude suffix stemmer: enough to match "capital"/"capitals", "running"/"run". */
export function stem(word: string): string {
  if (word.length <= 3) return word;
  for (const suffix of ['ingly', 'edly', 'ing', 'ies', 'ied', 'ed', 'es', 'ly', 's']) {
    if (word.endsWith(suffix) && word.length - suffix.length >= 3) {
      const base = word.slice(0, -suffix.length);
      return suffix === 'ies' || suffix === 'ied' ? `${base}y` : base;
    }
  }
  return word;
}

export function contentTerms(text: string): string[] {
  return words(text)
    .filter((w) => !STOP_WORDS.has(w) && (w.length > 1 || /\d/.test(w)))
    .map(stem);
}

export const clamp01 = (x: number) => Math.min(1, Math.max(0, x));
export const round = (x: number, digits = 4) => Math.round(x * 10 ** digits) / 10 ** digits;
