import { describe, expect, it } from 'vitest';
import { isTunnelAllowed } from './tunnel.js';

describe('CONNECT allowlist (deny by default)', () => {
  it.each([
    [[], 'example.com', 443, false],
    [['example.com:443'], 'example.com', 443, true],
    [['example.com:443'], 'EXAMPLE.com', 443, true],
    [['example.com:443'], 'example.com', 80, false],
    [['*.example.com:443'], 'api.example.com', 443, true],
    [['*.example.com:443'], 'example.com', 443, false],
    [['*.example.com:443'], 'evilexample.com', 443, false],
    [['127.0.0.1:*'], '127.0.0.1', 8080, true],
    [['*:443'], 'anything.test', 443, true],
    [['::1:443'], '::1', 443, true],
  ] as const)('%o allows %s:%d: %s', (allow, host, port, want) => {
    expect(isTunnelAllowed(allow, host, port)).toBe(want);
  });
});
