import { describe, expect, it } from 'vitest';
import { CacheObject } from '../cache/cache-object.js';
import type { HeaderMap } from '../http/headers.js';
import { serializeHeaders } from '../http1/response.js';
import { deliveryHeadBlock, deliveryHeaders } from './head.js';

/**
 * Session 11 (issue 16): a miss serialises its stored head for delivery without copying it first. The block must be
 * the one the copy gave: the same lines in the same order, our Via last (or joined to the origin's), the fields a
 * delivery leaves out left out, and a value that would break the framing refused the same way.
 */
function objWith(headers: HeaderMap): CacheObject {
  const obj = new CacheObject('k');
  obj.headers = headers;
  return obj;
}

describe('deliveryHeadBlock', () => {
  it.each<[string, HeaderMap]>([
    ['plain', { 'content-type': 'text/plain', etag: '"a"', 'cache-control': 'max-age=60' }],
    ['left-out fields', { age: '5', 'cache-status': 'up; hit', 'surrogate-key': 'a b', xkey: 'c', 'surrogate-control': 'max-age=9', 'cdn-cache-control': 'max-age=1', x: 'y' }],
    ['repeated field', { 'set-cookie': ['a=1', 'b=2'], vary: 'accept-encoding' }],
    ['the origin\'s Via', { via: '1.1 upstream', 'content-type': 'a/b' }],
    ['the origin\'s Via repeated', { 'content-type': 'a/b', via: ['1.1 one', '1.1 two'], z: '1' }],
    ['nothing', {}],
  ])('%s: the same block as serialising the delivered copy', (_name, headers) => {
    const obj = objWith(headers);
    expect(deliveryHeadBlock(obj, '1.1 sluice')).toBe(serializeHeaders(deliveryHeaders(obj, '1.1 sluice')));
    expect(deliveryHeadBlock(obj, '1.1 sluice')).toContain('via: ');
  });

  it('refuses a value that would split the response, as the copy did', () => {
    const obj = objWith({ 'x-bad': 'a\r\nb' });
    expect(() => serializeHeaders(deliveryHeaders(obj, 'v'))).toThrow(/invalid value/);
    expect(() => deliveryHeadBlock(obj, 'v')).toThrow(/invalid value/);
    expect(() => deliveryHeadBlock(objWith({}), 'v\r\n')).toThrow(/invalid value/);
  });
});
