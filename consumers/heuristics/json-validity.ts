// JSON validity: when the prompt asks for JSON, whether the response parses (a ```json fence is
// allowed around it).
import { skipped, type HeuristicOutcome, type ScoringInput } from './types.js';

const ASKS_FOR_JSON = /\bjson\b/i;

export function scoreJsonValidity(input: ScoringInput): HeuristicOutcome {
  if (!ASKS_FOR_JSON.test(input.prompt)) return skipped('the prompt does not ask for JSON');
  const fenced = /^\s*```(?:json)?\s*\n([\s\S]*?)\n?```\s*$/i.exec(input.response);
  const body = (fenced ? fenced[1] : input.response)?.trim() ?? '';
  try {
    const parsed: unknown = JSON.parse(body);
    const kind = Array.isArray(parsed) ? 'array' : parsed === null ? 'null' : typeof parsed;
    return { status: 'COMPLETED', value: 1, rawValue: 1, label: 'valid_json', reasoning: `the response is valid JSON (${kind})`, confidence: 1 };
  } catch (error) {
    return {
      status: 'COMPLETED',
      value: 0,
      rawValue: 0,
      label: 'invalid_json',
      reasoning: `the response is not valid JSON: ${(error as Error).message}`,
      confidence: 1,
    };
  }
}
