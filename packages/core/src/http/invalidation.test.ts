import { describe, expect, it } from 'vitest';
import { invalidatedTargets, isUnsafeMethod } from './invalidation.js';

describe('invalidatedTargets (RFC 9111 §4.4)', () => {
  it.each([
    ['GET', 200, {}, []],
    ['HEAD', 200, {}, []],
    ['OPTIONS', 204, {}, []],
    ['POST', 200, {}, ['/a?q=1']],
    ['M-SEARCH', 204, {}, ['/a?q=1']],
    ['POST', 301, {}, ['/a?q=1']],
    ['POST', 404, { location: '/b' }, []],
    ['DELETE', 500, {}, []],
    ['PUT', 201, { location: '/b', 'content-location': 'c' }, ['/a?q=1', '/b', '/c']],
    ['PUT', 201, { location: 'http://Site.Test:80/b' }, ['/a?q=1', '/b']],
    ['PUT', 201, { location: 'http://other.test/b', 'content-location': 'mailto:x@site.test' }, ['/a?q=1']],
    ['PUT', 201, { location: '/a?q=1' }, ['/a?q=1']],
  ])('%s answered %i with %j invalidates %j', (method, status, headers, expected) => {
    expect(invalidatedTargets(method, status, '/a?q=1', 'site.test', headers)).toEqual(expected);
  });

  it('only GET, HEAD, OPTIONS and TRACE are safe', () => {
    expect(['GET', 'HEAD', 'OPTIONS', 'TRACE'].map(isUnsafeMethod)).toEqual([false, false, false, false]);
    expect(['POST', 'PUT', 'DELETE', 'PATCH', 'M-SEARCH', 'get'].map(isUnsafeMethod)).toEqual([true, true, true, true, true, true]);
  });
});
