import { MISS_STRIP } from '../fetch/bereq.js';
import type { HeaderMap } from '../http/headers.js';
import type { DownstreamRequest } from '../policy/hooks.js';
import { segmentRangeHeader } from './slicer.js';

const STRIPPED: ReadonlySet<string> = new Set(MISS_STRIP);

/**
 * The request a segment subrequest makes: the client's headers without Range or conditionals, its own Range, `segment`
 * set. One builder for the machine's subrequests and the range probe's stored segment (probe.ts), so both compute the
 * same key and Vary signature.
 */
export function segmentRequestOf(parent: DownstreamRequest, index: number, size: number, gen: number | undefined): DownstreamRequest {
  // Copied without the stripped fields rather than copied then deleted from: deleting puts an object in V8's slow
  // (dictionary) mode, and every later read of a segment's headers (recv, key, bereq) pays for it, a hundred times
  // per 100 MiB read.
  const headers: HeaderMap = {};
  const src = parent.headers;
  for (const k in src) {
    const v = src[k];
    if (v !== undefined && !STRIPPED.has(k)) headers[k] = v;
  }
  headers['range'] = segmentRangeHeader(index, size);
  return { method: 'GET', url: parent.url, headers, httpVersion: parent.httpVersion, remoteAddress: parent.remoteAddress, segment: { index, size, gen }, restarts: 0 };
}
