// The rules that keep the code the way the developers' guide asks, run by `npm test` (and so
// by CI) before any test: `npm run lint` alone. Type-aware (typescript-eslint's project
// service reads each package's tsconfig), so floating promises are found, not guessed.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';
import { explainedIgnore } from './scripts/eslint/explained-ignore.js';

const CONFIG_MODULES = ['packages/server/src/config.ts', 'packages/cli/src/config.ts'];

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'docker/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  { files: ['**/*.{js,mjs,cjs}'], languageOptions: { globals: globals.node } },
  { files: ['**/*.cjs'], languageOptions: { sourceType: 'commonjs' } },
  // The dashboard's chart library is loaded by its own <script> tag (static/dashboard/index.html).
  { files: ['packages/server/static/**/*.js'], languageOptions: { globals: { ...globals.browser, uPlot: 'readonly' } } },
  {
    files: ['packages/*/src/**/*.ts', 'packages/*/tests/**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { metergate: { rules: { 'explained-ignore': explainedIgnore } } },
    rules: {
      // An unawaited promise is a lost error or an unordered write: await it, return it, or
      // `void` it with a comment saying who handles its failure.
      '@typescript-eslint/no-floating-promises': 'error',
      // An empty catch or `.catch(() => undefined)` needs a comment saying why the error may go.
      'no-empty': ['error', { allowEmptyCatch: false }],
      'metergate/explained-ignore': 'error',
      // Configuration is read in one module per program, validated and frozen.
      'no-restricted-properties': ['error', { object: 'process', property: 'env', message: 'read configuration in the config module (packages/server/src/config.ts or packages/cli/src/config.ts), not here' }],
      'no-restricted-syntax': ['error', {
        selector: 'ClassDeclaration[superClass.name="Error"]',
        message: 'our errors extend CodedError (packages/db/src/coded-error.ts) so they carry a stable code',
      }],
      // `_name` marks a parameter an interface requires but this implementation does not use.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    // TIGER_STYLE's limit: a function fits on a screen. Tests are exempt: a QUnit module is one
    // callback holding its tests.
    files: ['packages/*/src/**/*.ts'],
    rules: { 'max-lines-per-function': ['error', { max: 70, skipBlankLines: false, skipComments: false, IIFEs: true }] },
  },
  { files: CONFIG_MODULES, rules: { 'no-restricted-properties': 'off' } },
  {
    // Tests and the harness start processes with the environment they choose.
    files: ['packages/*/tests/**/*.ts', 'packages/testkit/src/**/*.ts', 'packages/e2e/src/**/*.ts'],
    // Tests also read untyped documents (compose files, Grafana JSON, SSE chunks) as `any`.
    rules: { 'no-restricted-properties': 'off', '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // The simulator stands in for OpenRouter; its errors become OpenRouter's wire errors, and it
    // depends on none of our packages.
    files: ['packages/simulator/**/*.ts'],
    rules: { 'no-restricted-syntax': 'off' },
  },
  { files: ['packages/db/src/coded-error.ts'], rules: { 'no-restricted-syntax': 'off' } },
);
