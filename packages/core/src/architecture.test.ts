import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The rooms of core and the rules between them (docs/architecture.md), checked on the sources as the errors and txlog
 * docs are: a relapse (fetch reaching into delivery, the slicer into the machine, a 1,400-line file) fails here.
 */
const src = path.dirname(fileURLToPath(import.meta.url));
const files = (readdirSync(src, { recursive: true }) as string[])
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.startsWith('test-support'))
  .map((f) => f.split(path.sep).join('/'));

/** The room of a file: its folder under src/, or '.' for the top-level modules. */
const roomOf = (f: string): string => (f.includes('/') ? (f.split('/')[0] as string) : '.');

/** Import specifiers of a file, resolved to src-relative paths (packages stay as written). */
function importsOf(f: string): string[] {
  const text = readFileSync(path.join(src, f), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/gms)) {
    const spec = m[1] as string;
    out.push(spec.startsWith('.') ? path.posix.normalize(path.posix.join(path.posix.dirname(f), spec)).replace(/\.js$/, '.ts') : spec);
  }
  return out;
}

describe('core architecture', () => {
  it('finds the rooms', () => {
    const rooms = new Set(files.map(roomOf));
    for (const r of ['proxy', 'fetch', 'deliver', 'slicer', 'txlog', 'cache', 'http', 'http1', 'policy']) expect(rooms).toContain(r);
  });

  const rules: Array<[string, (from: string, to: string) => boolean]> = [
    ['fetch never imports deliver', (from, to) => roomOf(from) === 'fetch' && roomOf(to) === 'deliver'],
    ['deliver never imports fetch', (from, to) => roomOf(from) === 'deliver' && roomOf(to) === 'fetch'],
    ['the slicer never imports the machine (proxy/)', (from, to) => roomOf(from) === 'slicer' && roomOf(to) === 'proxy'],
    ['ESI delivery is handed in: deliver/ and fetch/ never import esi/ delivery', (from, to) => (roomOf(from) === 'deliver' && roomOf(to) === 'esi') || (roomOf(from) === 'fetch' && to === 'esi/deliver.ts')],
    // index.ts is the public surface and re-exports the proxy.
    ['only proxy/ (and the public index) imports proxy/', (from, to) => roomOf(to) === 'proxy' && roomOf(from) !== 'proxy' && from !== 'index.ts'],
    ['http/ (pure RFC rules) imports only http/', (from, to) => roomOf(from) === 'http' && !to.startsWith('node:') && roomOf(to) !== 'http'],
    [
      'cache/ imports only http/, errors and stats',
      (from, to) => roomOf(from) === 'cache' && !['cache', 'http'].includes(roomOf(to)) && !['errors.ts', 'stats.ts'].includes(to) && !to.startsWith('node:'),
    ],
    ['core never imports origin-client or undici', (_from, to) => to.startsWith('@sluice/origin-client') || to === 'undici'],
  ];

  it.each(rules)('%s', (_name, broken) => {
    const offending: string[] = [];
    for (const f of files) for (const to of importsOf(f)) if (broken(f, to)) offending.push(`${f} -> ${to}`);
    expect(offending).toEqual([]);
  });

  it('no file over 450 lines', () => {
    const big = files.map((f) => [f, readFileSync(path.join(src, f), 'utf8').split('\n').length] as const).filter(([, n]) => n > 450);
    expect(big).toEqual([]);
  });

  it('no function over 60 lines', () => {
    const long: string[] = [];
    for (const f of files) {
      const text = readFileSync(path.join(src, f), 'utf8');
      const sf = ts.createSourceFile(f, text, ts.ScriptTarget.ES2022, true);
      const visit = (node: ts.Node): void => {
        if (ts.isFunctionLike(node) && (node as ts.FunctionLikeDeclaration).body !== undefined) {
          const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
          const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line;
          // Object literals of arrow functions count as their own functions; a class is not a function.
          if (end - start + 1 > 60) long.push(`${f}:${start + 1} (${end - start + 1} lines)`);
        }
        ts.forEachChild(node, visit);
      };
      visit(sf);
    }
    expect(long).toEqual([]);
  });
});
