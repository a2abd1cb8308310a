// The dimensions registry the API serves: the built-ins plus what the scorers published.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createPublishedDimensionRegistry, HEURISTIC_DIMENSIONS, publishDimensions } from '../src/dimensions.js';
import { JUDGE_DIMENSIONS } from '../consumers/judge/index.js';
import { createTestDatabase, type TestDatabase } from './helpers.js';

describe('published dimensions', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase({ max: 2 });
  });
  afterAll(async () => database.drop());

  it('adds the judge rubrics a scorer publishes to the built-in heuristics, after a refresh', async () => {
    const registry = await createPublishedDimensionRegistry(database.db, { refreshMs: 60_000 });
    try {
      expect(registry.get('judge_relevance')).toBeUndefined();
      expect(registry.list().map((d) => d.id)).toEqual(HEURISTIC_DIMENSIONS.map((d) => d.id));
      await publishDimensions(database.db, [...HEURISTIC_DIMENSIONS, ...JUDGE_DIMENSIONS]);
      await publishDimensions(database.db, JUDGE_DIMENSIONS); // republishing is idempotent
      await registry.refresh();
      expect(registry.get('judge_relevance')).toMatchObject({ scorerKind: 'LLM_JUDGE', direction: 'higher_is_better' });
      expect(registry.list()).toHaveLength(HEURISTIC_DIMENSIONS.length + JUDGE_DIMENSIONS.length);
      expect(registry.defaults).toEqual(['groundedness', 'answer_relevance', 'pii_leak', 'toxicity']);
    } finally {
      registry.close();
    }
  });
});
