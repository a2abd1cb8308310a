// Generates src/schemas/event-types.generated.ts, the TypeScript types of the events' data, from
// their JSON Schemas (src/schemas/events/<type>.json) with json-schema-to-typescript, formatted by
// the project's Prettier settings. The file is committed; test/unit/event-types.test.ts fails when
// it is stale. Run: npm run generate:event-types
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { compile } from 'json-schema-to-typescript';
import prettier from 'prettier';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const EVENT_TYPES_FILE = path.join(ROOT, 'src/schemas/event-types.generated.ts');
const SCHEMA_DIR = path.join(ROOT, 'src/schemas/events');

/** The type name of each event's data, and of the object types nested in it (by JSON pointer). */
const TYPE_NAMES: Record<string, { root: string; nested?: Record<string, string> }> = {
  'evaluation.created': { root: 'EvaluationCreatedData' },
  'evaluation.client_scored': { root: 'EvaluationClientScoredData', nested: { '/properties/scores/items': 'ClientScore' } },
  'evaluation.deleted': { root: 'EvaluationDeletedData' },
  'evaluation.scored': { root: 'EvaluationScoredData', nested: { '/properties/scores/items': 'ScoreResult' } },
};

type SchemaNode = Record<string, unknown>;

/**
 * The schema as the types should read it: the wire format allows additional properties (so old
 * consumers survive an added field), but the types list the known fields only; nested object
 * types get their names.
 */
function forTypes(schema: SchemaNode, nested: Record<string, string>, pointer = ''): SchemaNode {
  const copy: SchemaNode = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'additionalProperties' || key === '$id' || key === 'title' || key === 'version') continue;
    if (Array.isArray(value)) copy[key] = (value as unknown[]).map((v: unknown, i) => (isNode(v) ? forTypes(v, nested, `${pointer}/${key}/${i}`) : v));
    else if (isNode(value)) copy[key] = forTypes(value, nested, `${pointer}/${key}`);
    else copy[key] = value;
  }
  if (pointer.endsWith('/properties')) return copy; // property names, not a schema
  // A free-form object (metadata) stays a map of anything.
  if (copy.type === 'object' && copy.properties === undefined) copy.additionalProperties = true;
  const name = nested[pointer];
  if (name) copy.title = name;
  return copy;
}

const isNode = (value: unknown): value is SchemaNode => typeof value === 'object' && value !== null && !Array.isArray(value);

/** The generated file's text, formatted. */
export async function generateEventTypes(): Promise<string> {
  const parts: string[] = [
    '// Generated from src/schemas/events/*.json by scripts/generate-event-types.ts (npm run generate:event-types).\n// Do not edit: change the schema and generate again; test/unit/event-types.test.ts fails when this file is stale.\n',
  ];
  for (const type of Object.keys(TYPE_NAMES).sort()) {
    const names = TYPE_NAMES[type] as { root: string; nested?: Record<string, string> };
    const schema = JSON.parse(fs.readFileSync(path.join(SCHEMA_DIR, `${type}.json`), 'utf8')) as SchemaNode;
    const typed = forTypes(schema, names.nested ?? {});
    parts.push(
      await compile(typed, names.root, {
        bannerComment: `/** The data of the ${type} event (schema version ${String(schema.version)}). */`,
        ignoreMinAndMaxItems: true,
        additionalProperties: false,
        format: false,
        declareExternallyReferenced: true,
      }),
    );
  }
  const options = (await prettier.resolveConfig(EVENT_TYPES_FILE)) ?? {};
  return prettier.format(parts.join('\n'), { ...options, filepath: EVENT_TYPES_FILE });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  fs.writeFileSync(EVENT_TYPES_FILE, await generateEventTypes());
  process.stdout.write(`wrote ${path.relative(ROOT, EVENT_TYPES_FILE)}\n`);
}
