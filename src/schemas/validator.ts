// One ajv instance per process, with formats, compiling the project's JSON Schemas; and a
// validator for untrusted input whose error report is bounded whatever the input holds.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { ValidationError, type FieldError } from '../errors.js';

// ajv-formats is CommonJS; its default export arrives wrapped under ESM.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv) => Ajv;

export function createAjv(options: { allErrors?: boolean } = {}): Ajv {
  const ajv = new Ajv({ allErrors: options.allErrors ?? true, strict: false });
  addFormats(ajv);
  return ajv;
}

/** At most this many field errors are reported for one value. */
export const MAX_FIELD_ERRORS = 20;
/** Pointers and details longer than this are shortened (a property name can be 100 KB long). */
const MAX_ERROR_TEXT = 200;

const shorten = (text: string) => (text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT - 1)}…` : text);

export function toFieldErrors(errors: ErrorObject[] | null | undefined): FieldError[] {
  return (errors ?? []).map((e) => {
    // Point at the property itself for "missing" and "not allowed" errors.
    const params = e.params as { missingProperty?: string; additionalProperty?: string };
    const property = e.keyword === 'required' ? params.missingProperty : e.keyword === 'additionalProperties' ? params.additionalProperty : undefined;
    const detail = e.keyword === 'additionalProperties' ? 'is not an allowed property' : (e.message ?? e.keyword);
    return { pointer: shorten(`${e.instancePath}${property === undefined ? '' : `/${escapeSegment(property)}`}` || '/'), detail: shorten(detail) };
  });
}

const escapeSegment = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');

/** Validates or throws a ValidationError naming each failing field. */
export function assertValid<T>(validate: ValidateFunction, value: unknown, what: string): T {
  if (!validate(value)) throw new ValidationError(`${what} is invalid`, toFieldErrors(validate.errors));
  return value as T;
}

export interface BoundedValidator {
  /** Returns the value typed when valid; throws a ValidationError with at most MAX_FIELD_ERRORS errors. */
  assert<T>(value: unknown, what: string): T;
}

// How much of an invalid value is searched for more errors: keys per object, items per array
// (one past every maxItems the schemas use), and containers in all.
const VIEW_KEYS = 64;
const VIEW_ITEMS = 101;
const VIEW_NODES = 2_000;

/**
 * A validator for untrusted input. A valid value costs one pass that stops at the first error.
 * An invalid one is searched for more errors only in a bounded view of it (the first keys and
 * items of each container, breadth first, up to a fixed number of containers), so a small body
 * holding 100,000 faults costs no more than one holding twenty.
 */
export function createBoundedValidator(schema: object): BoundedValidator {
  const first = createAjv({ allErrors: false }).compile(schema);
  const all = createAjv({ allErrors: true }).compile(schema);
  return {
    assert<T>(value: unknown, what: string): T {
      if (first(value)) return value as T;
      const firstErrors = toFieldErrors(first.errors);
      const view = boundedView(value);
      all(view.value);
      const found = (all.errors ?? []).filter((e) => !view.misleads(e, value));
      const errors = found.length > 0 ? toFieldErrors(found.slice(0, MAX_FIELD_ERRORS)) : firstErrors;
      throw new ValidationError(`${what} is invalid`, errors, { truncated: found.length > MAX_FIELD_ERRORS || view.partial });
    },
  };
}

interface View {
  value: unknown;
  /** Whether any container was cut short. */
  partial: boolean;
  /** Whether an error found in the view says something untrue of the whole value. */
  misleads(error: ErrorObject, original: unknown): boolean;
}

function boundedView(root: unknown): View {
  const replaced: string[] = [];
  const cut = new Set<string>();
  const copy = (value: unknown): unknown => (Array.isArray(value) ? [] : value !== null && typeof value === 'object' ? {} : value);
  const top = copy(root);
  const queue: { source: unknown; target: unknown; path: string }[] = [{ source: root, target: top, path: '' }];
  let nodes = 0;
  for (let head = 0; head < queue.length; head++) {
    const { source, target, path } = queue[head] as (typeof queue)[number];
    if (Array.isArray(source)) {
      if (source.length > VIEW_ITEMS) cut.add(path);
      const items = source.slice(0, VIEW_ITEMS);
      for (let i = 0; i < items.length; i++) {
        const child: unknown = items[i];
        const childPath = `${path}/${i}`;
        (target as unknown[]).push(place(child, childPath));
      }
    } else {
      const keys = Object.keys(source as object);
      if (keys.length > VIEW_KEYS) cut.add(path);
      for (const key of keys.slice(0, VIEW_KEYS)) {
        (target as Record<string, unknown>)[key] = place((source as Record<string, unknown>)[key], `${path}/${escapeSegment(key)}`);
      }
    }
  }
  function place(child: unknown, childPath: string): unknown {
    if (child === null || typeof child !== 'object') return child;
    if (++nodes > VIEW_NODES) {
      replaced.push(childPath);
      return null;
    }
    const target = copy(child);
    queue.push({ source: child, target, path: childPath });
    return target;
  }
  return {
    value: top,
    partial: cut.size > 0 || replaced.length > 0,
    misleads(error, original) {
      if (replaced.some((p) => error.instancePath === p || error.instancePath.startsWith(`${p}/`))) return true;
      if (!cut.has(error.instancePath)) return false;
      // A property that exists beyond the view is not missing; a container cut short can look too small.
      if (error.keyword === 'required') {
        const container = atPointer(original, error.instancePath) as Record<string, unknown> | undefined;
        return container !== undefined && Object.hasOwn(container, (error.params as { missingProperty: string }).missingProperty);
      }
      return error.keyword === 'minProperties' || error.keyword === 'minItems' || error.keyword === 'uniqueItems' || error.keyword === 'contains';
    },
  };
}

function atPointer(value: unknown, pointer: string): unknown {
  if (pointer === '') return value;
  let current = value;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}
