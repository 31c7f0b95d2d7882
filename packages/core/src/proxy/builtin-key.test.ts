import { describe, expect, it } from 'vitest';
import { builtinCacheKey, type DownstreamRequest } from '../policy/hooks.js';
import { lastBuiltinKey } from './builtin-key.js';

const req = (url: string, host: string | string[] | undefined): DownstreamRequest => ({
  method: 'GET',
  url,
  headers: host === undefined ? {} : { host },
  httpVersion: '1.1',
  remoteAddress: '127.0.0.1',
  restarts: 0,
});

describe('lastBuiltinKey', () => {
  it('gives builtinCacheKey for every request of a sequence that repeats, changes host, URL, case and port', () => {
    const key = lastBuiltinKey();
    const seq = [
      req('/a', 'example.com'),
      req('/a', 'example.com'),
      req('/a', 'Example.COM.:80'),
      req('/a', 'example.com'),
      req('/b', 'example.com'),
      req('/b', 'example.com:8080'),
      req('/b', undefined),
      req('/b', undefined),
      req('/b', ['a.example', 'b.example']),
      req('/b', 'a.example, b.example'),
      req('/b', ''),
      req('/a', 'example.com'),
      req('/a?x=1', 'example.com'),
    ];
    const got = seq.map((r) => key(r));
    expect(got).toEqual(seq.map((r) => builtinCacheKey(r)));
    // Distinct inputs that must not share a key.
    expect(new Set([got[0], got[4], got[5], got[6], got[12]]).size).toBe(5);
  });

  it('hands back the very same key string while host and URL repeat (its hash is computed once)', () => {
    const key = lastBuiltinKey();
    const a = key(req('/same', 'h.example'));
    const b = key(req(`/${'same'}`, `h.${'example'}`));
    expect(b).toBe(a);
  });
});
