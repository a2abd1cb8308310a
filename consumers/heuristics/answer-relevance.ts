// Answer relevance, a heuristic pre-filter: does the response answer what the prompt asks?
// Refusals, non-answers, echoes of the question and announced topic changes are irrelevant. The
// question's type sets what an answer must contain: a name for who/which/where, a number for
// how many/when, an instruction for how-to, yes or no for a yes/no question. Other prompts need
// the response to share a content word with the prompt, or to be a short direct answer. Known
// limits (docs/consumers.md): an answer of the right type that is wrong or about something else
// passes; a long answer in other words than the prompt's is unsure.
import { analyse, MONTHS_AND_DAYS, numbersIn, type Token } from './nlp.js';
import { round } from './text.js';
import { skipped, type HeuristicOutcome, type ScoringInput } from './types.js';

const REFUSALS = [
  /\bi(?:'m| am)?\s*(?:sorry,?\s*)?(?:but\s*)?(?:i\s*)?(?:can(?:no|['’])t|cannot|am unable to|won['’]t|will not|am not able to|must decline to)\s+(?:help|assist|answer|provide|do that|comply|share|explain|discuss|give|tell)/i,
  /\bas an ai(?: language model)?,? i (?:can(?:no|['’])t|cannot|don['’]t|do not|am unable)/i,
  /\bi(?:['’]m| am) (?:unable|not able|not allowed|not permitted) to (?:help|assist|answer|provide|share|discuss|explain)/i,
  /\bi (?:must|have to) (?:decline|refuse)/i,
];
const NON_ANSWERS = /^\W*(?:lol|idk|dunno|no idea|not sure|i don['’]?t know|who knows|no clue|whatever|n\/a)\b/i;
const DRIFT = /\b(?:anyway|anyhow|by the way|speaking of which|on (?:an)?other note|unrelated(?:ly)?|changing the subject)\b/i;
const YES_NO =
  /^\W*(?:yes|no|yeah|yep|nope|sure|certainly|absolutely|definitely|of course|not (?:really|at all)|it is|it isn['’]t|they are|it does|it doesn['’]t)\b/i;
// Words that frame an answer without being one.
const FILLER = new Set(
  'sure here summary answer question good great ok okay thanks thank glad happy help certainly course follow following below above one sentence briefly short brief'.split(
    ' ',
  ),
);
const INSTRUCTION_START = /^\W*(?:first|then|next|finally|step|to\b|\d+[.)])/i;
const MODAL_YOU = /\byou (?:can|could|should|need to|have to|must|may|might want to)\b/i;

type QuestionType = 'name' | 'quantity' | 'howto' | 'yesno' | 'task' | 'open';

export function refusal(response: string): boolean {
  return REFUSALS.some((pattern) => pattern.test(response));
}

/** What kind of answer the prompt's question calls for. */
export function questionType(question: string): QuestionType {
  const q = question.trim().toLowerCase();
  if (/^(?:who|whom|whose|where)\b/.test(q) || /^which\b/.test(q) || /^what(?:['’]s| is| are)?\b.*\bname\b/.test(q)) return 'name';
  if (/^(?:how (?:many|much|long|old|far|big|tall|often)|when|what (?:year|date|time|percentage))\b/.test(q)) return 'quantity';
  if (/^how (?:do|can|could|should|would|to|does)\b/.test(q)) return 'howto';
  if (/^(?:is|are|was|were|does|do|did|should|will|has|have)\b/.test(q)) return 'yesno';
  if (
    /^(?:please\s+)?(?:summari[sz]e|translate|write|list|give|explain|describe|tell|name|suggest|recommend|convert|calculate|define|compare|rewrite|generate|create|outline)\b/.test(
      q,
    ) ||
    /^(?:can|could|would) you\b/.test(q)
  )
    return 'task';
  return 'open';
}

const normalise = (text: string) =>
  text
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .trim();

// Numbers count even when the stop list has them ("Eight." answers "how many legs?").
const contentTokens = (tokens: Token[]) => tokens.filter((t) => t.type !== 'punctuation' && (!t.stop || t.pos === 'NUM') && /[\p{L}\p{N}]/u.test(t.text));
const contentKeys = (tokens: Token[]) => contentTokens(tokens).map((t) => t.key);

interface Verdict {
  relevant: boolean;
  confidence: number;
  label: string;
  why: string;
}

function verdict(input: ScoringInput): Verdict {
  const response = input.response.trim();
  if (refusal(response)) return { relevant: false, confidence: 0.9, label: 'refusal', why: 'the response refuses to answer' };
  if (NON_ANSWERS.test(response) && response.split(/\s+/).length <= 6)
    return { relevant: false, confidence: 0.8, label: 'no_answer', why: 'the response says it does not know' };
  const prompt = analyse(input.prompt);
  const answer = analyse(response);
  const questionSentence = prompt.sentences.findLast((s) => s.text.trim().endsWith('?')) ?? prompt.sentences[0];
  const question = questionSentence?.text ?? input.prompt;
  const type = questionType(question);
  const promptKeys = new Set(contentKeys(prompt.tokens));
  const promptWords = new Set(prompt.tokens.map((t) => t.text.toLowerCase()));
  const novel = contentTokens(answer.tokens).filter((t) => !promptKeys.has(t.key) && !FILLER.has(t.lemma.replace(/['’]s$/, '')));
  if (novel.length === 0) return { relevant: false, confidence: 0.85, label: 'echo', why: 'the response adds nothing to the question' };

  const names = answer.tokens.filter((t, i) => /^\p{Lu}/u.test(t.text) && !promptWords.has(t.text.toLowerCase()) && (t.pos === 'PROPN' || (i > 0 && !t.stop)));
  const numbers = numbersIn(answer.tokens).length > 0 || answer.tokens.some((t) => MONTHS_AND_DAYS.has(t.text.toLowerCase()));
  const instruction = answer.sentences.some(
    (s) =>
      s.tokens[0]?.pos === 'VERB' ||
      INSTRUCTION_START.test(s.text) ||
      MODAL_YOU.test(s.text) ||
      /^\W*(?:use|run|click|set|add|open|type|press|go)\b/i.test(s.text),
  );
  const answered: Record<QuestionType, boolean> = {
    name: names.length > 0,
    quantity: numbers,
    howto: instruction,
    yesno: YES_NO.test(response),
    task: true,
    open: true,
  };
  // Restating the question is an echo unless an answer of the expected kind comes with it.
  const echoed = normalise(question).split(' ').length >= 3 && normalise(response).includes(normalise(question));
  if (echoed && (type === 'task' || type === 'open' || !answered[type]))
    return { relevant: false, confidence: 0.8, label: 'echo', why: 'the response repeats the question without answering it' };
  // Unsure: a digression after a real answer is still relevant; the judge can tell them apart.
  if (DRIFT.test(response)) return { relevant: false, confidence: 0.55, label: 'topic_drift', why: 'the response changes the subject' };

  const shared = contentKeys(answer.tokens).filter((k) => promptKeys.has(k)).length;
  const short = contentKeys(answer.tokens).length <= 6;
  if (type === 'name' || type === 'quantity' || type === 'howto') {
    const expected = { name: 'a name', quantity: 'a number or date', howto: 'an instruction' }[type];
    return answered[type]
      ? { relevant: true, confidence: 0.85, label: 'relevant', why: `the question asks for ${expected} and the response gives one` }
      : { relevant: false, confidence: 0.7, label: 'unanswered', why: `the question asks for ${expected} and the response gives none` };
  }
  if (type === 'yesno' && answered.yesno) return { relevant: true, confidence: 0.85, label: 'relevant', why: 'a yes/no question answered yes or no' };
  if (shared >= 1) return { relevant: true, confidence: shared >= 2 ? 0.8 : 0.65, label: 'relevant', why: `shares ${shared} content word(s) with the prompt` };
  if (short) return { relevant: true, confidence: 0.6, label: 'relevant', why: 'a short direct answer' };
  if (type === 'task') return { relevant: true, confidence: 0.5, label: 'relevant', why: 'a task answered in its own words' };
  return { relevant: false, confidence: 0.55, label: 'off_topic', why: 'shares no content word with the prompt' };
}

export function scoreAnswerRelevance(input: ScoringInput): HeuristicOutcome {
  if (!input.response.trim()) return { status: 'COMPLETED', value: 0, rawValue: 0, label: 'empty', reasoning: 'the response is empty', confidence: 1 };
  if (!input.prompt.trim()) return skipped('the prompt is empty');
  const v = verdict(input);
  // The value reads as the probability that the response is relevant.
  const value = round(v.relevant ? 0.5 + v.confidence / 2 : 0.5 - v.confidence / 2);
  return { status: 'COMPLETED', value, rawValue: value, label: v.label, reasoning: v.why, confidence: v.confidence };
}
