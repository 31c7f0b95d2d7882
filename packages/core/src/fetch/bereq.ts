import type { CacheObject } from '../cache/cache-object.js';
import { hasValidator, revalidationHeaders } from '../http/conditional.js';
import { appendHeader, stripHopByHop, type HeaderMap } from '../http/headers.js';
import { surrogateCapability, type CacheRules } from '../http/targeted.js';
import { segmentRangeHeader } from '../slicer/slicer.js';
import type { PinSlot, UpstreamRequest } from '../upstream.js';
import type { DownstreamRequest } from '../policy/hooks.js';

/**
 * Backend requests (Varnish's bereq): what is sent to the origin for a miss and for a pass. Pure functions of the
 * client request.
 */

/** Request headers that only make sense between the client and the cache: a miss fetches the whole object. */
export const MISS_STRIP = ['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range', 'range'];

/** Left out of a miss's request: Expect, and the conditionals and Range unless they are forwarded. */
const DROP_MISS = { drop: new Set([...MISS_STRIP, 'expect']) };
const DROP_EXPECT = { drop: new Set(['expect']) };

/** What a backend request is built from. */
export interface BereqSource {
  req: DownstreamRequest;
  key: string;
  pin: PinSlot;
}

/** Via and X-Forwarded-For, appended to what the client sent. */
export function addForwarding(headers: HeaderMap, req: DownstreamRequest, via: string): void {
  appendHeader(headers, 'via', via);
  appendHeader(headers, 'x-forwarded-for', req.remoteAddress);
}

/**
 * The origin request for a miss: the client's headers without hop-by-hop fields, conditionals or Range (unless
 * `forwardConditionals`: a hit-for-miss fetch cannot be stored whole anyway), plus Surrogate-Capability when `rules`
 * target Surrogate-Control. A segment subrequest asks for its bytes.
 */
export function missRequest(tx: BereqSource, via: string, forwardConditionals: boolean, rules?: CacheRules): UpstreamRequest {
  // A miss sends no body, so there is nothing to expect a 100 Continue for (undici refuses the header anyway).
  const headers = stripHopByHop(tx.req.headers, forwardConditionals ? DROP_EXPECT : DROP_MISS);
  // Surrogate-Control targeting: tell the origin which device token our directives use (W3C Edge Architecture).
  const capability = rules === undefined ? undefined : surrogateCapability(rules);
  if (capability !== undefined) appendHeader(headers, 'surrogate-capability', capability);
  if (tx.req.segment !== undefined) headers['range'] = segmentRangeHeader(tx.req.segment.index, tx.req.segment.size);
  addForwarding(headers, tx.req, via);
  // A HEAD miss fetches GET so the object can be stored and serve later GETs (Varnish does the same).
  return { method: 'GET', path: tx.req.url, headers, body: null, key: tx.key, pin: tx.pin, backend: tx.req.backend };
}

/** The origin request for a pass: the client's method, headers (framing kept when there is a body) and body. */
export function passRequest(tx: BereqSource, via: string, body: UpstreamRequest['body']): UpstreamRequest {
  const headers = stripHopByHop(tx.req.headers, { keepContentLength: true });
  addForwarding(headers, tx.req, via);
  if (body === null) delete headers['content-length'];
  // Expect: 100-continue is answered by our own server when the fetch starts reading the body (as nginx does);
  // it is not forwarded.
  delete headers['expect'];
  return { method: tx.req.method, path: tx.req.url, headers, body, key: tx.key, pin: tx.pin, backend: tx.req.backend };
}

/**
 * Makes a fetch conditional on a stale object's validators (RFC 9111 §4.3.1) when it is complete and has one;
 * returns whether it did (a 304 then refreshes that object).
 */
export function makeConditional(bereq: UpstreamRequest, stale: CacheObject): boolean {
  if (stale.state !== 'finished' || !hasValidator(stale.headers)) return false;
  Object.assign(bereq.headers, revalidationHeaders(stale.headers));
  return true;
}

/**
 * The origin's interim responses forwarded to the client whose request caused the fetch (103 Early Hints, RFC 8297),
 * hop-by-hop fields stripped. Never stored: a later hit gets no hints.
 */
export function interimTo(res: { writeInterim(status: number, headers: HeaderMap): void }): (status: number, headers: HeaderMap) => void {
  return (status, headers) => res.writeInterim(status, stripHopByHop(headers));
}
