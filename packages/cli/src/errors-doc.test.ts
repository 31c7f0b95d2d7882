import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Like fastify's errors-doc test: every error code declared in a package's error union is documented in
// docs/errors.md, and every documented code exists.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const read = (p: string): string => readFileSync(path.join(root, p), 'utf8');

function declaredCodes(file: string, typeName: string): string[] {
  const src = read(file);
  const start = src.indexOf(`export type ${typeName} =`);
  const end = src.indexOf(';', start);
  return [...src.slice(start, end).matchAll(/'([A-Z_]+)'/g)].map((m) => m[1] as string);
}

describe('docs/errors.md', () => {
  const doc = read('docs/errors.md');
  const documented = new Set([...doc.matchAll(/`((?:CORE|ORIGIN|CLI)_ERR_[A-Z_]+)`/g)].map((m) => m[1] as string));
  const declared = [
    ...declaredCodes('packages/core/src/errors.ts', 'ProxyErrorCode'),
    ...declaredCodes('packages/origin-client/src/errors.ts', 'OriginErrorCode'),
    ...declaredCodes('packages/cli/src/errors.ts', 'CliErrorCode'),
  ];

  it('documents every declared code', () => {
    expect(declared.length).toBeGreaterThan(10);
    expect(declared.filter((c) => !documented.has(c))).toEqual([]);
  });

  it('documents no code that does not exist', () => {
    expect([...documented].filter((c) => !declared.includes(c))).toEqual([]);
  });
});
