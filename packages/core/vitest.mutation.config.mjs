// The core tests as Stryker runs them (stryker.config.mjs): all of them but the wire fuzz, whose 250 ms idle windows
// make its "enough answers" bound depend on machine load (it failed Stryker's initial run on a loaded machine).
import { configDefaults, defineConfig, mergeConfig } from 'vitest/config';
import base from './vitest.config.ts';

export default mergeConfig(base, defineConfig({ test: { exclude: [...configDefaults.exclude, 'src/proxy/wire.fuzz.test.ts'] } }));
