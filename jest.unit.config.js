// The fast tier: the tests under test/unit/, which need no Postgres and no Kafka (error
// classification, retry, configuration, lifecycle, heuristics, judge parsing and breaker, problem
// mapping). `npm run test:unit` runs them in seconds; `./scripts/test` runs them with the rest.
import base from './jest.config.js';

const { globalSetup: _needsTheStack, ...rest } = base;

export default {
  ...rest,
  testMatch: ['<rootDir>/test/unit/**/*.test.ts'],
  testTimeout: 20000,
};
