// Backward compatibility of an event schema with a released version: a consumer written against
// the released schema must still read every event the current one allows, and a consumer of the
// current schema must still read events already on the topics. So a field may be added only as
// optional; no field may be removed, retyped, made optional or required afresh; objects stay open;
// enums may grow (readers tolerate unknown values, as they do unknown fields) but not shrink.

type Schema = Record<string, unknown>;

const CONSTRAINTS = ['type', 'format', 'pattern', 'minimum', 'maximum', 'minLength', 'maxLength', 'minItems', 'maxItems', 'anyOf', 'oneOf', 'const'];

const asSchema = (value: unknown): Schema | undefined => (value && typeof value === 'object' && !Array.isArray(value) ? (value as Schema) : undefined);

/** A comparable form of a constraint: `type` as a sorted list, the rest as canonical JSON. */
function canonical(keyword: string, value: unknown): string {
  if (keyword === 'type') return JSON.stringify((Array.isArray(value) ? [...(value as unknown[])] : value === undefined ? [] : [value]).map(String).sort());
  return JSON.stringify(value ?? null);
}

export function breakingChanges(released: Schema, current: Schema, at = ''): string[] {
  const where = at || '/';
  const changes: string[] = [];
  for (const keyword of CONSTRAINTS) {
    if (canonical(keyword, released[keyword]) !== canonical(keyword, current[keyword]))
      changes.push(`${where}: ${keyword} changed from ${canonical(keyword, released[keyword])} to ${canonical(keyword, current[keyword])}`);
  }
  if (Array.isArray(released.enum)) {
    const now = new Set(Array.isArray(current.enum) ? current.enum : []);
    for (const value of released.enum) if (!now.has(value)) changes.push(`${where}: enum value ${JSON.stringify(value)} removed`);
  } else if (Array.isArray(current.enum)) changes.push(`${where}: an enum now restricts the value`);

  if (released.additionalProperties !== false && current.additionalProperties === false) changes.push(`${where}: additional properties are no longer allowed`);

  const releasedProperties = asSchema(released.properties) ?? {};
  const currentProperties = asSchema(current.properties) ?? {};
  const releasedRequired = new Set((released.required as string[] | undefined) ?? []);
  const currentRequired = new Set((current.required as string[] | undefined) ?? []);
  for (const [name, schema] of Object.entries(releasedProperties)) {
    const now = asSchema(currentProperties[name]);
    if (!now) {
      changes.push(`${at}/${name}: field removed`);
      continue;
    }
    if (releasedRequired.has(name) && !currentRequired.has(name)) changes.push(`${at}/${name}: no longer required`);
    changes.push(...breakingChanges(asSchema(schema) ?? {}, now, `${at}/${name}`));
  }
  for (const name of currentRequired) if (!releasedRequired.has(name)) changes.push(`${at}/${name}: required, but events already published may lack it`);

  const releasedItems = asSchema(released.items);
  const currentItems = asSchema(current.items);
  if (releasedItems && currentItems) changes.push(...breakingChanges(releasedItems, currentItems, `${at}[]`));
  else if (releasedItems || currentItems) changes.push(`${where}: items schema ${releasedItems ? 'removed' : 'added'}`);
  return changes;
}
