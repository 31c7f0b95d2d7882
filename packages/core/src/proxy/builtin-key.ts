import { builtinCacheKey, type DownstreamRequest } from '../policy/hooks.js';
import { segmentKeyOf } from '../slicer/slicer.js';

/**
 * builtinCacheKey, remembering its last answer: a run of requests for one URL on one Host (a hot object) gets the same
 * key string each time, whose hash the index lookup has already computed, instead of a host normalised and a string
 * joined and hashed per request. The key is a function of the Host field and the URL alone, so the last answer holds
 * while both are equal.
 */
export function lastBuiltinKey(): (req: DownstreamRequest) => string {
  let host = '';
  let url = '';
  let key: string | undefined;
  return (req) => {
    const h = req.headers['host'];
    if (key !== undefined && h === host && req.url === url) return key;
    const k = builtinCacheKey(req);
    if (typeof h === 'string') {
      host = h;
      url = req.url;
      key = k;
    }
    return k;
  };
}

/** A request's cache key from the hook's answer (builtin when none), with the segment for slicer subrequests. */
export function fullKey(req: DownstreamRequest, hookKey: string | undefined): string {
  const key = hookKey ?? builtinCacheKey(req);
  return req.segment === undefined ? key : segmentKeyOf(key, req.segment.size, req.segment.index, req.segment.gen);
}
