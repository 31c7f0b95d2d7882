import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    name: 'cli',
    include: ['src/**/*.test.ts'],
    expect: { requireAssertions: true },
    // Most tests here start `sluice` as child processes (oclif loads in 1-7 s each on a loaded 2-core machine); a
    // test that runs three or four of them in a row needs more than 20 s there. A bound on hangs, not a measurement.
    testTimeout: 60_000,
    hookTimeout: 30_000,
  },
});
