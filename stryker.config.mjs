// Mutation testing (issue 17): small behaviour-breaking edits to core's HTTP rules and delivery, one at a time, each
// run against the core tests that cover it (http/, cache/, deliver/). Slow, so not part of `pnpm test`: `pnpm mutation` (or `pnpm mutate`) for all of it,
// `pnpm mutate --mutate 'packages/core/src/http/**/*.ts,!**/*.test.ts'` for one folder. Results: reports/mutation/.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'pnpm',
  testRunner: 'vitest',
  plugins: ['@stryker-mutator/vitest-runner'],
  vitest: { configFile: 'packages/core/vitest.mutation.config.mjs', dir: 'packages/core' },
  mutate: ['packages/core/src/http/**/*.ts', 'packages/core/src/cache/**/*.ts', 'packages/core/src/deliver/**/*.ts', '!**/*.test.ts', '!**/index.ts'],
  // Each mutant runs only the tests that executed its code in the first, instrumented run.
  coverageAnalysis: 'perTest',
  ignoreStatic: true,
  reporters: ['clear-text', 'progress', 'json', 'html'],
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
  timeoutMS: 10_000,
  // The instrumented initial run takes minutes on a loaded machine (Stryker's default allows 5).
  dryRunTimeoutMinutes: 20,
  concurrency: 2,
};
