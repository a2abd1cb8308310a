// The lint gate: typescript-eslint's type-aware recommended rules over every TypeScript file,
// plus the module boundaries of the layout (scripts/eslint-boundaries.js, CONTRIBUTING.md).
// `npm run lint` runs it and ./scripts/test fails on any finding. Rules switched off say why.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import boundaries from './scripts/eslint-boundaries.js';

export default tseslint.config(
  { ignores: ['node_modules/**', 'coverage/**', 'test-output/**', '.cache/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    plugins: { evalbox: boundaries },
    rules: {
      'evalbox/module-boundaries': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Off: `async` marks functions that implement a promise-returning interface (a scorer's
      // score(), a store's load()); a synchronous throw inside them must become a rejection,
      // which is exactly what `async` without `await` gives.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // Plain JavaScript (the bin shim, jest's config and global setup, the lint config): no type information.
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      globals: { process: 'readonly', console: 'readonly', URL: 'readonly', Buffer: 'readonly' },
    },
  },
);
