#!/usr/bin/env node
// Entry point. Errors become one line naming the problem and a non-zero exit (no stack, no multi-line banner).
import { flush, run } from '@oclif/core';

try {
  await run(process.argv.slice(2), import.meta.url);
  await flush();
} catch (err) {
  const exit = typeof err?.oclif?.exit === 'number' ? err.oclif.exit : 2;
  if (exit === 0) process.exit(0);
  const raw = err instanceof Error ? err.message : String(err);
  const line = raw.split('\n').map((s) => s.trim()).find((s) => s !== '') ?? 'failed';
  process.stderr.write(`sluice: ${line.replace(/^Error:\s*/, '')}\n`);
  process.exit(exit);
}
