import { pipeline, Transform, type Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { ProxyEnv } from '../context.js';
import { isRevalidation304, type BerespInput } from '../fetch/beresp.js';
import { getHeader, type HeaderMap } from '../http/headers.js';
import type { Transaction } from '../txlog/txlog.js';
import type { UpstreamResponse } from '../upstream.js';
import { EsiParser, type EsiDiagnostic } from './parser.js';
import { esiProgramOf, setEsiProgram } from './program.js';

/**
 * The fetch side of ESI (Varnish's VFP esi, cache_esi_fetch.c): an object the policy marked `doEsi` gets its ESI
 * program, parsed from the body as the fetch pumps it, chunk by chunk, so the template streams and is parsed once,
 * never per hit. Parse errors go to the fetch's log as `ESI_xmlerror` and to the esi_errors / esi_warnings counters.
 *
 * A gzipped template (the origin compressed it for the client's Accept-Encoding) is stored decompressed, without its
 * Content-Encoding, and parsed as it is decompressed; the assembled page goes out uncompressed (Varnish re-gzips it).
 * Not processed (delivered as they are): bodyless responses, partial ones (206, slicer segments), and other
 * content codings (br, deflate...).
 */
export function esiFetch<Ctx>(env: ProxyEnv<Ctx>, i: BerespInput, headers: HeaderMap, be: Transaction | undefined): UpstreamResponse {
  const report = reporter(env, be);
  const coding = getHeader(headers, 'content-encoding')?.trim().toLowerCase();
  const gzipped = coding === 'gzip' || coding === 'x-gzip';
  if (coding !== undefined && coding !== 'identity' && !gzipped) {
    report({ level: 'note', offset: 0, message: `No ESI processing, body has Content-Encoding: ${coding}` });
    return i.res;
  }
  if (isRevalidation304(i)) {
    // The stale body is reused: so is its program (Varnish copies OA_ESIDATA), or it is parsed now, whole.
    const stale = i.stale;
    const chunks = stale?.completeChunks;
    if (stale === undefined || chunks === undefined) return i.res;
    const known = esiProgramOf(stale);
    if (known !== undefined && known.done) {
      setEsiProgram(i.obj, known);
      return i.res;
    }
    const parser = new EsiParser(i.bereq.path, report);
    for (const c of chunks) parser.feed(c);
    parser.end();
    setEsiProgram(i.obj, parser.program);
    return i.res;
  }
  // Bodyless answers have nothing to parse; a 206 (a Range forwarded on pass or hit-for-miss) or a slicer segment is
  // a piece of a body, not a template.
  if (i.bereq.method === 'HEAD' || i.res.status === 204 || i.res.status === 304 || i.res.status === 206 || i.res.status < 200 || i.req.segment !== undefined) return i.res;
  const parser = new EsiParser(i.bereq.path, report);
  setEsiProgram(i.obj, parser.program);
  return tapped(i.res, parser, gzipped, headers);
}

/**
 * The origin response with its body parsed on the way to the object (gunzipped first when `gunzip`: the stored
 * headers then lose Content-Encoding, and the origin's Content-Length no longer frames what is stored).
 */
function tapped(res: UpstreamResponse, parser: EsiParser, gunzip: boolean, stored: HeaderMap): UpstreamResponse {
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      parser.feed(chunk);
      done(null, chunk);
    },
    flush(done) {
      parser.end();
      done();
    },
  });
  // Destroying the tap (the fetch failed or was aborted) destroys the origin body; an origin error (or a corrupt
  // gzip stream) reaches the tap, and so fails the object.
  const stages: Readable[] = gunzip ? [res.body, zlib.createGunzip()] : [res.body];
  pipeline([...stages, tap], () => undefined);
  if (!gunzip) return { ...res, body: tap };
  delete stored['content-encoding'];
  const { 'content-length': _length, ...framing } = res.headers;
  return { ...res, headers: framing, body: tap };
}

function reporter<Ctx>(env: ProxyEnv<Ctx>, be: Transaction | undefined): (d: EsiDiagnostic) => void {
  return (d) => {
    if (d.level === 'error') env.stats.esi_errors++;
    else if (d.level === 'warn') env.stats.esi_warnings++;
    be?.add('ESI_xmlerror', `${d.level === 'error' ? 'ERR' : 'WARN'}: after ${d.offset} ${d.message}`);
  };
}
