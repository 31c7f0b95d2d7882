import type { ProxyEnv, Step, Tx } from '../context.js';
import { logRestart, logRestartedRequest } from '../txlog/records.js';

/**
 * The restart step (Varnish's cnt_restart): a hook returned 'restart' (from requestFilter, or responseFilter on a
 * delivery or a synth). The request walks the machine again from recv, as the hooks left it (URL, headers, backend),
 * with `req.restarts` one higher and nothing of the first walk's lookup, object or outcome. In the log the request's
 * transaction ends with `Link req N restart` and a new one begins with `Begin req <old> restart`, as VSL_ChgId does.
 * Past `maxRestarts` the client gets a 503 ("Too many restarts", a VCL_Error record), as Varnish does.
 */
export function restart<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>): Step {
  tx.req.restarts++;
  tx.obj = undefined;
  tx.stale = undefined;
  tx.lookup = undefined;
  tx.key = '';
  tx.coalesced = false;
  tx.status = {};
  tx.synth = undefined;
  tx.outcome = 'synth';
  if (tx.req.restarts > env.maxRestarts) return refuse(tx, 'Too many restarts');
  // A request body that was sent on already cannot be sent again (Varnish needs std.cache_req_body for that).
  const body = tx.body;
  if (body !== null && (tx.bodyBytes() > 0 || body.readableDidRead || body.destroyed)) return refuse(tx, 'Restart not possible: the request body was sent already');
  env.stats.s_restart++;
  if (tx.log !== undefined && env.txlog !== undefined) {
    tx.log = logRestart(env.txlog, tx.log);
    logRestartedRequest(tx.log, tx.req);
  }
  return 'recv';
}

function refuse<Ctx>(tx: Tx<Ctx>, why: string): Step {
  tx.log?.add('VCL_Error', why);
  tx.synth = { status: 503 };
  tx.outcome = 'error';
  return 'synth';
}
