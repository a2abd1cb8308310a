// What JSON Schema cannot say but Postgres insists on: text and jsonb refuse the NUL character,
// jsonb refuses a lone UTF-16 surrogate (JSON.parse accepts both), and a deeply nested value
// overflows JSON.stringify and Postgres' stack; a number beyond the safe integer range was already
// changed by JSON.parse. Checked after ajv so such input is a 400 naming
// the field, never a 5xx from the database.
import type { FieldError } from '../errors.js';

/** Deeper metadata than this is refused; real attributes are a few levels deep. */
export const MAX_JSON_DEPTH = 32;

function badString(value: string): string | undefined {
  if (value.includes('\u0000')) return 'contains the NUL character (\\u0000), which cannot be stored';
  // String.prototype.isWellFormed (Node 20) is native and linear; the ES2023 lib lacks its type.
  if (!(value as unknown as { isWellFormed(): boolean }).isWellFormed()) return 'contains an unpaired UTF-16 surrogate, which is not valid Unicode';
  return undefined;
}

// A pointer segment per RFC 6901, with the unstorable characters spelled out so the pointer
// itself can be shown and logged.
const escapePointer = (key: string) =>
  key
    .replace(/~/g, '~0')
    .replace(/\//g, '~1')
    // eslint-disable-next-line no-control-regex -- NUL is exactly what Postgres cannot store
    .replace(/\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** Every field of a parsed JSON value that Postgres could not store, as JSON pointers. */
export function unstorableFields(value: unknown, pointer = ''): FieldError[] {
  const found: FieldError[] = [];
  // The path is kept as segments and spelt as a pointer only for a field that is refused.
  const path: (string | number)[] = [];
  const at = () => pointer + path.map((segment) => `/${typeof segment === 'number' ? segment : escapePointer(segment)}`).join('') || '/';
  const visit = (item: unknown, depth: number): void => {
    if (found.length >= 20) return;
    if (typeof item === 'string') {
      const problem = badString(item);
      if (problem) found.push({ pointer: at(), detail: problem });
    } else if (typeof item === 'number') {
      // JSON.parse turns 9007199254740993 into ...992 and 1e400 into Infinity (stored as null):
      // refused rather than stored changed. Send such values as strings.
      if (!Number.isFinite(item) || Math.abs(item) > Number.MAX_SAFE_INTEGER)
        found.push({ pointer: at(), detail: 'is a number beyond ±(2^53 - 1), which cannot be kept exactly; send it as a string' });
    } else if (item !== null && typeof item === 'object') {
      if (depth >= MAX_JSON_DEPTH) {
        found.push({ pointer: at(), detail: `nests deeper than ${MAX_JSON_DEPTH} levels` });
        return;
      }
      const entries: [string | number, unknown][] = Array.isArray(item) ? item.map((element, index) => [index, element]) : Object.entries(item);
      for (const [key, child] of entries) {
        path.push(key);
        const keyProblem = typeof key === 'string' ? badString(key) : undefined;
        if (keyProblem) found.push({ pointer: at(), detail: `the property name ${keyProblem}` });
        visit(child, depth + 1);
        path.pop();
      }
    }
  };
  visit(value, 0);
  return found;
}
