// The events' TypeScript types are generated from their JSON Schemas and committed: this fails
// when a schema changed and the generated file was not regenerated (or was edited by hand).
import { describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import { EVENT_TYPES_FILE, generateEventTypes } from '../../scripts/generate-event-types.js';

describe('generated event types', () => {
  it('src/schemas/event-types.generated.ts is what the schemas generate (run npm run generate:event-types)', async () => {
    expect(fs.readFileSync(EVENT_TYPES_FILE, 'utf8')).toBe(await generateEventTypes());
  });
});
