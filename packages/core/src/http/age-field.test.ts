import { describe, expect, it } from 'vitest';
import { ageFieldSec, initialAgeSec } from './age.js';

/** Issue 12: Age parsing as RFC 9111 §5.1 says (before, "7200,0" was read as invalid, so as 0: a stale object fresh). */
describe('ageFieldSec (RFC 9111 §5.1)', () => {
  it.each([
    [undefined, 0],
    ['0', 0],
    [' 42 ', 42],
    ['7200,0', 7200],
    ['7200, 0', 7200],
    ['0,7200', 0],
    ['3600, 3600', 3600],
    ['abc', 0],
    ['-7200', 0],
    ['7200.0', 0],
    ['7200;foo=bar', 0],
    ['7200;foo=111', 0],
    ['', 0],
    ['99999999999', 2147483648],
  ])('Age: %j -> %i s', (raw, want) => expect(ageFieldSec(raw)).toBe(want));

  it('two Age field lines: the first line counts', () => {
    const t = Date.parse('2026-12-01T12:00:00Z');
    const date = new Date(t).toUTCString();
    expect(initialAgeSec({ age: ['7200', '0'], date }, t, t)).toBe(7200);
    expect(initialAgeSec({ age: ['0', '7200'], date }, t, t)).toBe(0);
  });
});
