import type { ConfigFile } from './config.js';

/**
 * Types a config file: `export default defineConfig({ ... })` gets completion and checking for every setting and
 * hook, with the hooks' shared context inferred from `hooks.newCtx` (as vite's defineConfig does). At run time it
 * returns its argument unchanged.
 *
 * ```ts
 * import { defineConfig } from '@sluice/cli';
 * export default defineConfig({
 *   grace: '30s',
 *   hooks: {
 *     newCtx: () => ({ started: Date.now() }),
 *     requestFilter: (req, ctx) => (req.url.startsWith('/admin') ? 'pass' : undefined),
 *   },
 * });
 * ```
 */
export function defineConfig<Ctx = Record<string, unknown>>(config: ConfigFile<Ctx>): ConfigFile<Ctx> {
  return config;
}
