import type { ProxyEnv, Step, Tx } from '../context.js';
import { newTx } from '../context.js';
import type { IncludeOp } from '../esi/deliver.js';
import type { HeaderMap } from '../http/headers.js';
import type { DownstreamRequest } from '../policy/hooks.js';
import { logRequest } from '../txlog/records.js';
import { drive, type StepTable } from './driver.js';

/**
 * An ESI include's subrequest (Varnish's ved_include): a GET for the include's URL with the parent request's headers
 * but for conditionals, Range, Accept-Encoding and body framing (Host replaced when the src named one), `esiLevel`
 * set, through recv, cacheKey and lookup as a request of its own (counted as a hit or a miss, not as a client
 * request), logged as `Begin req <parent> esi` with a `Link req <vxid> esi` in the parent. It is never sliced. It
 * stops where it has an object to read or a synthetic answer; the ESI delivery writes its body (esi/deliver.ts).
 */
const ESI_STRIP = ['if-modified-since', 'if-none-match', 'if-range', 'if-match', 'if-unmodified-since', 'range', 'accept-encoding', 'content-length', 'transfer-encoding', 'expect'];

const esiStop = (s: Step): boolean => s === 'deliver' || s === 'synth' || s === 'done';

export async function esiRequest<Ctx>(env: ProxyEnv<Ctx>, steps: StepTable<Ctx>, parent: Tx<Ctx>, inc: IncludeOp, level: number): Promise<{ tx: Tx<Ctx>; stopped: Step }> {
  const headers: HeaderMap = { ...parent.req.headers };
  for (const h of ESI_STRIP) delete headers[h];
  if (inc.host !== undefined) headers['host'] = inc.host;
  const req: DownstreamRequest = { method: 'GET', url: inc.url, headers, httpVersion: '1.1', remoteAddress: parent.req.remoteAddress, esiLevel: level, restarts: 0 };
  const tx = newTx<Ctx>(parent.res, parent, req, env.newCtx(), parent.pin);
  if (parent.log !== undefined && env.txlog !== undefined) {
    const t = env.txlog.beginSubrequest(parent.log, 'esi');
    tx.log = t;
    t.timestamp('Start');
    logRequest(t, req);
  }
  // An include is looked up whole, never sliced.
  const stopped = await drive({ ...steps, slice: steps.lookup }, tx, esiStop);
  return { tx, stopped };
}
