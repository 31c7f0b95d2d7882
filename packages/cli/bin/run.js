#!/usr/bin/env node
// Entry point. A failure becomes one line naming the problem (no stack, unless SLUICE_DEBUG is set) and exit status
// 2 when the command line is wrong, 1 when the work failed (src/error-line.ts, src/errors.ts).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const runJs = fileURLToPath(import.meta.url);
if (!existsSync(new URL('../dist/commands/', import.meta.url))) {
  const root = path.resolve(path.dirname(runJs), '../../..');
  process.stderr.write(`sluice: not built yet: run \`npx -y pnpm@10 install && npx -y pnpm@10 build\` in ${root}\n`);
  process.exit(1);
}
const { flush, run } = await import('@oclif/core');
const { errorLine } = await import('../dist/error-line.js');
const { invocation } = await import('../dist/invocation.js');

const argv = process.argv.slice(2);
try {
  await run(argv, import.meta.url);
  await flush();
} catch (err) {
  if (err?.oclif?.exit === 0) process.exit(0);
  if (process.env.SLUICE_DEBUG) process.stderr.write(`${err?.stack ?? err}\n`);
  const command = argv[0] !== undefined && /^[a-z][\w-]*$/.test(argv[0]) ? argv[0] : undefined;
  const { line, exit } = errorLine(err, { command, invocation: invocation(runJs) });
  process.stderr.write(`sluice: ${line}\n`);
  process.exit(exit);
}
