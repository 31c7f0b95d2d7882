import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Every record tag the proxy writes is in docs/txlog.md's table, and the table names no tag the code never writes.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const read = (p: string): string => readFileSync(path.join(root, p), 'utf8');

describe('docs/txlog.md', () => {
  // Every non-test source of core: records are written by the steps' rooms (txlog/records.ts, fetch/, slicer/...).
  const srcDir = path.join(root, 'packages/core/src');
  const files = (readdirSync(srcDir, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
  const sources = files.map((f) => read(path.join('packages/core/src', f))).join('\n');
  const written = new Set([
    ...[...sources.matchAll(/\.(?:add|words)\('([A-Za-z_]+)'/g)].map((m) => m[1] as string),
    // Records appended to a raw array as tag and value (`raw.push('ReqUnset', ...)`, txlog/records.ts).
    ...[...sources.matchAll(/raw\.push\('([A-Za-z_]+)'/g)].map((m) => m[1] as string),
    // The records with a method of their own (Transaction.hit, Transaction.acct), when the code calls them.
    ...(/\.hit\(/.test(sources) ? ['Hit'] : []),
    ...(/\.acct\(/.test(sources) ? ['ReqAcct'] : []),
    ...[...sources.matchAll(/\.(?:headers|headerBlock)\('([A-Za-z_]+)'/g)].map((m) => m[1] as string),
    // The records made once as a run (txlog/raw.ts's RecordRun: `['VCL_call', call]`), when the code logs the run.
    ...[...read('packages/core/src/txlog/raw.ts').matchAll(/^\s+\['([A-Za-z_]+)', /gm)].map((m) => m[1] as string),
    'Timestamp',
    'Begin',
    'End',
  ]);
  const table = read('docs/txlog.md').split('## Records')[1]?.split('## ')[0] ?? '';
  const documented = new Set([...table.matchAll(/^\| ([^|]+) \|/gm)].flatMap((m) => [...(m[1] as string).matchAll(/`([A-Za-z_]+)`/g)].map((x) => x[1] as string)));

  it('documents every tag the proxy writes', () => {
    expect(written.size).toBeGreaterThan(25);
    expect([...written].filter((t) => !documented.has(t))).toEqual([]);
  });

  it('documents no tag the proxy does not write', () => {
    expect([...documented].filter((t) => !written.has(t))).toEqual([]);
  });
});
