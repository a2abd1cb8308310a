// Event schema governance: the schemas in src/schemas/events/ are checked against their last
// released version (kept in src/schemas/events/released/), feed ajv and the OpenAPI document,
// and name themselves in each event's CloudEvents dataschema.
import { describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import path from 'node:path';
import { buildOpenApiDocument } from '../src/api/openapi.js';
import { cloudEventHeaders, readCloudEventHeaders } from '../src/cloudevents.js';
import { breakingChanges } from '../src/schemas/compatibility.js';
import { EVENT_SCHEMA_DIR, evaluationCreatedSchema, evaluationScoredSchema, readEventSchema, type EventSchema } from '../src/schemas/events.js';
import { createAjv } from '../src/schemas/validator.js';

/** Each current schema with its last released version. */
function schemasWithLastRelease(): { type: string; current: EventSchema; released: EventSchema; releasedFile: string }[] {
  const releasedFiles = fs.readdirSync(path.join(EVENT_SCHEMA_DIR, 'released'));
  return fs
    .readdirSync(EVENT_SCHEMA_DIR)
    .filter((f) => f.endsWith('.json'))
    .map((file) => {
      const type = file.replace(/\.json$/, '');
      const versions = releasedFiles
        .map((f) => new RegExp(`^${type.replace('.', '\\.')}\\.v(\\d+)\\.json$`).exec(f))
        .filter((m): m is RegExpExecArray => m !== null)
        .sort((a, b) => Number(b[1]) - Number(a[1]));
      const releasedFile = versions[0]?.[0];
      if (!releasedFile) throw new Error(`${type} has no released version in released/`);
      return { type, current: readEventSchema(file), released: readEventSchema(`released/${releasedFile}`), releasedFile };
    });
}

interface MutableSchema {
  properties: Record<string, MutableSchema>;
  required: string[];
  items: MutableSchema;
  additionalProperties?: boolean;
  [keyword: string]: unknown;
}

const clone = (schema: EventSchema): MutableSchema => structuredClone(schema) as unknown as MutableSchema;
/** A sub-schema by property names ('[]' steps into array items). */
const at = (schema: MutableSchema, ...names: string[]): MutableSchema => names.reduce((s, n) => (n === '[]' ? s.items : s.properties[n]!), schema);

describe('event schema governance', () => {
  it('every event schema is backward compatible with its last released version', () => {
    const all = schemasWithLastRelease();
    expect(all.map((s) => s.type).sort()).toEqual(['evaluation.client_scored', 'evaluation.created', 'evaluation.deleted', 'evaluation.scored']);
    for (const { type, current, released, releasedFile } of all) {
      expect({ type, releasedFile, breaking: breakingChanges(released, current) }).toEqual({ type, releasedFile, breaking: [] });
      // Versioned: the $id names the version, never older than the last release.
      expect(current.$id).toBe(`https://evalbox.dev/schemas/events/${type}/v${current.version}.json`);
      expect(current.version).toBeGreaterThanOrEqual(released.version);
      expect(current.title).toBe(type);
    }
  });

  it('adding an optional field passes', () => {
    const current = clone(evaluationScoredSchema);
    current.properties.traceId = { type: 'string' } as unknown as MutableSchema;
    at(current, 'scores', '[]').properties.costUsd = { type: ['number', 'null'] } as unknown as MutableSchema;
    expect(breakingChanges(evaluationScoredSchema, current)).toEqual([]);
  });

  it('removing a field fails, required or optional', () => {
    const current = clone(evaluationCreatedSchema);
    delete current.properties.reference;
    delete current.properties.applicationId;
    current.required = current.required.filter((f) => f !== 'applicationId');
    expect(breakingChanges(evaluationCreatedSchema, current)).toEqual(['/applicationId: field removed', '/reference: field removed']);
  });

  it('retyping a field fails, nested ones too', () => {
    const current = clone(evaluationScoredSchema);
    at(current, 'evaluationId').format = 'uri';
    at(current, 'scores', '[]', 'value').type = 'string';
    expect(breakingChanges(evaluationScoredSchema, current)).toEqual([
      '/evaluationId: format changed from "uuid" to "uri"',
      '/scores[]/value: type changed from ["null","number"] to ["string"]',
    ]);
  });

  it('a new required field, a field made optional, a removed enum value and a closed object fail', () => {
    const current = clone(evaluationScoredSchema);
    current.properties.tenant = { type: 'string' } as unknown as MutableSchema;
    current.required = [...current.required.filter((f) => f !== 'scoredAt'), 'tenant'];
    at(current, 'status').enum = ['SCORED', 'PARTIALLY_SCORED'];
    current.additionalProperties = false;
    expect(breakingChanges(evaluationScoredSchema, current).sort()).toEqual(
      [
        '/: additional properties are no longer allowed',
        '/scoredAt: no longer required',
        '/status: enum value "SCORING_FAILED" removed',
        '/tenant: required, but events already published may lack it',
      ].sort(),
    );
  });

  it('the compatibility check fails on a deliberate removal in the schema folder itself', () => {
    // The same check as the first test, run on a copy of the folder with a field deleted.
    const { released, current } = schemasWithLastRelease().find((s) => s.type === 'evaluation.created')!;
    const edited = clone(current);
    delete edited.properties.modelId;
    expect(breakingChanges(released, edited)).toEqual(['/modelId: field removed']);
  });

  it('ajv compiles every current and released schema, and the OpenAPI document shows the current ones', () => {
    const ajv = createAjv();
    for (const { current, released } of schemasWithLastRelease()) {
      expect(typeof ajv.compile({ ...released, $id: `${released.$id}#released` })).toBe('function');
      expect(typeof ajv.compile(current)).toBe('function');
    }
    const document = buildOpenApiDocument('test') as unknown as { components: { schemas: Record<string, { properties: object }> } };
    expect(Object.keys(document.components.schemas.EvaluationCreatedEvent!.properties)).toEqual(Object.keys(evaluationCreatedSchema.properties as object));
    expect(Object.keys(document.components.schemas.EvaluationScoredEvent!.properties)).toEqual(Object.keys(evaluationScoredSchema.properties as object));
  });

  it('each event names its schema in the CloudEvents dataschema attribute (ce_dataschema)', () => {
    const headers = cloudEventHeaders({ id: 'e1', type: 'evaluation.scored', source: '/evalbox/scorer', time: new Date().toISOString() });
    expect(headers.ce_dataschema).toBe(evaluationScoredSchema.$id);
    expect(readCloudEventHeaders(headers).dataschema).toBe('https://evalbox.dev/schemas/events/evaluation.scored/v1.json');
    expect(cloudEventHeaders({ id: 'e2', type: 'evaluation.created', source: '/evalbox/api', time: '' }).ce_dataschema).toBe(evaluationCreatedSchema.$id);
  });
});
