// Jest runs the TypeScript sources as ESM (ts-jest, transpile-only) against the real
// Postgres and Kafka that scripts/test starts. Each test file gets its own database,
// cloned from a migrated template in globalSetup, and its own topic names.
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, diagnostics: false }],
  },
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  globalSetup: '<rootDir>/test/global-setup.mjs',
  testSequencer: '<rootDir>/test/sequencer.mjs',
  testTimeout: 120000,
  maxWorkers: 2,
};
