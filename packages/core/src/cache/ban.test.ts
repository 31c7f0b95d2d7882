import { describe, expect, it } from 'vitest';
import { banMatches, parseBan } from './ban.js';

const target = { status: 200, headers: { 'content-type': 'text/html; charset=utf-8', 'x-tag': 'a b' }, url: '/products/42?x=1', host: 'shop.test' };

describe('ban expressions', () => {
  it.each([
    ['req.url ~ ^/products/', true],
    ['req.url ~ ^/blog/', false],
    ['req.url !~ ^/blog/', true],
    ['obj.status == 200', true],
    ['obj.status != 200', false],
    ['obj.http.content-type ~ "text/html"', true],
    ['obj.http.Content-Type ~ text/html && req.url ~ /42', true],
    ['obj.http.content-type ~ text/html && obj.status == 404', false],
    ['obj.http.x-tag == "a b"', true],
    ['obj.http.missing == x', false],
    ['obj.http.missing !~ x', true],
    ['req.http.host == shop.test', true],
    ['req.url == "/products/42?x=1"', true],
  ])('%s', (expr, want) => {
    expect(banMatches(parseBan(expr), target)).toBe(want);
  });

  it.each([
    ['', /expected obj.status/],
    ['obj.color == red', /expected obj.status/],
    ['req.url = /x', /expected ==/],
    ['req.url ~ "unterminated', /unterminated/],
    ['req.url ~ (', /invalid regular expression/],
    ['obj.status ~ 2..', /3-digit status/],
    ['req.url ~ a || req.url ~ b', /expected && or the end/],
    ['req.http.cookie ~ x', /only req.url and req.http.host/],
  ])('rejects %s', (expr, msg) => {
    expect(() => parseBan(expr)).toThrow(msg);
  });
});
