import { getHeader } from '../http/headers.js';
import { invalidatedTargets } from '../http/invalidation.js';
import type { DownstreamRequest } from '../policy/hooks.js';
import type { ProxyEnv } from '../context.js';
import { sliceKeyPrefix } from '../slicer/slicer.js';
import type { UpstreamResponse } from '../upstream.js';

/**
 * RFC 9111 §4.4: a non-error response to an unsafe method (POST, PUT, DELETE, PATCH, an unknown one) invalidates the
 * stored responses of the target URI, and of Location / Content-Location when they are on the same host. Runs when
 * the origin's headers arrive, before the client sees them, so a request sent after the response never gets the old
 * object. Every variant goes (and the slicer's segments), under the key the cacheKey hook gives a GET of that URL.
 * Returns how many objects were removed.
 */
export function invalidateAfterUnsafe<Ctx>(env: ProxyEnv<Ctx>, req: DownstreamRequest, res: UpstreamResponse): number {
  const host = getHeader(req.headers, 'host') ?? '';
  const targets = invalidatedTargets(req.method, res.status, req.url, host, res.headers);
  let n = 0;
  const purge = (key: string): number => env.store.purgeKey(key) + (env.sliced ? env.store.purgePrefix(sliceKeyPrefix(key)) : 0);
  for (const url of targets) {
    const key = env.keyOf({ method: 'GET', url, headers: { host }, httpVersion: req.httpVersion, remoteAddress: req.remoteAddress, restarts: 0 }, env.newCtx());
    // An async cacheKey hook: purged once it answers (a failing hook leaves the objects to expire).
    if (typeof key === 'string') n += purge(key);
    else key.then(purge, () => undefined);
  }
  return n;
}
