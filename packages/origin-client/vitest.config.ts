import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    name: 'origin-client',
    include: ['src/**/*.test.ts'],
    expect: { requireAssertions: true },
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
});
