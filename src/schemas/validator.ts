// One ajv instance per process, with formats, compiling the project's JSON Schemas.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { ValidationError, type FieldError } from '../errors.js';

// ajv-formats is CommonJS; its default export arrives wrapped under ESM.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv) => Ajv;

export function createAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, strict: false });
  addFormats(ajv);
  return ajv;
}

export function toFieldErrors(errors: ErrorObject[] | null | undefined): FieldError[] {
  return (errors ?? []).map((e) => {
    // Point at the property itself for "missing" and "not allowed" errors.
    const params = e.params as { missingProperty?: string; additionalProperty?: string };
    const property = e.keyword === 'required' ? params.missingProperty : e.keyword === 'additionalProperties' ? params.additionalProperty : undefined;
    const detail = e.keyword === 'additionalProperties' ? 'is not an allowed property' : (e.message ?? e.keyword);
    return { pointer: `${e.instancePath}${property === undefined ? '' : `/${property}`}` || '/', detail };
  });
}

/** Validates or throws a ValidationError naming each failing field. */
export function assertValid<T>(validate: ValidateFunction, value: unknown, what: string): T {
  if (!validate(value)) throw new ValidationError(`${what} is invalid`, toFieldErrors(validate.errors));
  return value as T;
}
