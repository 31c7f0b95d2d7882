import { CacheObject } from '../cache/cache-object.js';
import type { ProxyEnv, Step, Tx } from '../context.js';
import { ProxyError } from '../errors.js';
import { writeSynth } from '../deliver/head.js';
import { interimTo, makeConditional, missRequest, passRequest } from '../fetch/bereq.js';
import { runFetch } from '../fetch/fetch.js';
import { getHeader } from '../http/headers.js';
import { hostOk, normaliseTarget } from '../http/target.js';
import { builtinRecv, type RecvAction } from '../policy/hooks.js';
import { sliceSizeOf } from '../slicer/sliced.js';
import { sliceKeyPrefix } from '../slicer/slicer.js';
import { logLookup, logVcl } from '../txlog/records.js';

/**
 * The client-side steps (Varnish's cnt_recv, cnt_lookup, cnt_miss, cnt_pass, cnt_synth). Each does one thing and
 * names the next step; the driver runs them and steps never call each other. A step that does not wait returns its
 * Step directly: a hit runs without a promise per step.
 */

export function recv<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>): Step | Promise<Step> {
  const req = tx.req;
  if (!normaliseTarget(req) || !hostOk(req)) {
    logVcl(tx.log, 'RECV', 'synth');
    env.stats.client_req_400++;
    tx.synth = { status: 400 };
    tx.closeAfter = true;
    return 'synth';
  }
  if (req.method === 'PURGE') return purgeRequest(env, tx);
  if (req.url === '*') {
    // OPTIONS * asks about the server itself (RFC 9110 §9.3.7): answered here, never forwarded as a path.
    logVcl(tx.log, 'RECV', 'synth');
    tx.synth = { status: 200, body: '', headers: { allow: 'GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH' } };
    return 'synth';
  }
  if (tx.pin.pinned) {
    // A connection pinned by NTLM/Negotiate: always passed, never cached, over its own origin connection.
    tx.status = { fwd: 'uri-miss', detail: 'pinned' };
    tx.outcome = 'pass';
    return 'pass';
  }
  const fromHook = env.hooks.requestFilter?.(req, tx.ctx);
  if (fromHook instanceof Promise) return fromHook.then((a) => recvAction(env, tx, a ?? builtinRecv(req)));
  return recvAction(env, tx, fromHook ?? builtinRecv(req));
}

function recvAction<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, action: RecvAction): Step {
  logVcl(tx.log, 'RECV', action === 'lookup' ? 'hash' : typeof action === 'string' ? action : 'synth');
  if (action === 'lookup') return sliceSizeOf(env, tx) === undefined ? 'lookup' : 'slice';
  if (action === 'restart') return 'restart';
  if (action === 'pass') {
    logVcl(tx.log, 'PASS', 'fetch');
    tx.status = { fwd: 'uri-miss', detail: 'pass' };
    tx.outcome = 'pass';
    return 'pass';
  }
  if (action === 'pipe') {
    // Pipe is approximated by a pass on a connection that closes afterwards.
    logVcl(tx.log, 'PIPE', 'pipe');
    tx.status = { fwd: 'uri-miss', detail: 'pipe' };
    tx.outcome = 'pass';
    tx.closeAfter = true;
    return 'pass';
  }
  tx.synth = action.synth;
  return 'synth';
}

/** HTTP PURGE from an allowed address: removes every variant of the request's cache key. */
function purgeRequest<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>): Step | Promise<Step> {
  const addr = tx.req.remoteAddress.replace(/^::ffff:/, '');
  if (!env.purgeAllow.has(addr)) {
    tx.synth = { status: 405, body: 'PURGE not allowed from this address\n' };
    return 'synth';
  }
  const purged = (n: number): Step => {
    tx.synth = { status: 200, body: `Purged ${n}\n` };
    tx.status = { detail: 'purge' };
    return 'synth';
  };
  const n = purgeUrl(env, tx.req.url, getHeader(tx.req.headers, 'host') ?? '');
  return typeof n === 'number' ? purged(n) : n.then(purged);
}

/**
 * Removes every variant stored for `url` on `host` (the key the cacheKey hook gives that request), segments too. A
 * promise only when the cacheKey hook returned one.
 */
export function purgeUrl<Ctx>(env: ProxyEnv<Ctx>, url: string, host: string): number | Promise<number> {
  const purge = (key: string): number => env.store.purgeKey(key) + (env.sliced ? env.store.purgePrefix(sliceKeyPrefix(key)) : 0);
  const key = env.keyOf({ method: 'GET', url, headers: { host }, httpVersion: '1.1', remoteAddress: '', restarts: 0 }, env.newCtx());
  return typeof key === 'string' ? purge(key) : key.then(purge);
}

export function lookup<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>): Step | Promise<Step> {
  const key = env.keyOf(tx.req, tx.ctx);
  if (typeof key !== 'string') return key.then((k) => lookupKey(env, tx, k));
  return lookupKey(env, tx, key);
}

function lookupKey<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, key: string): Step | Promise<Step> {
  tx.key = key;
  const r = env.store.lookup(key, tx.req.headers, env.now());
  tx.lookup = r.kind;
  if (tx.log !== undefined) logLookup(tx.log, r, env.now(), env.hitForMissSec);
  switch (r.kind) {
    case 'hit':
      env.stats.cache_hit++;
      r.obj.hits++;
      tx.obj = r.obj;
      tx.status = tx.coalesced ? { hit: true, detail: 'coalesced' } : { hit: true };
      tx.outcome = 'hit';
      return 'deliver';
    case 'busy':
      // The waiting list: park until the fetch has decided its headers, then look up again.
      env.stats.busy_sleep++;
      return r.obj.waitState('stream', tx.abortWatch).then(() => {
        env.stats.busy_wakeup++;
        tx.coalesced = true;
        return 'lookup' as const;
      });
    case 'grace':
      // Serve the stale object now; refresh it in the background unless a fetch is already running.
      env.stats.cache_hit++;
      env.stats.cache_hit_grace++;
      r.obj.hits++;
      tx.obj = r.obj;
      tx.status = { hit: true, detail: 'grace' };
      tx.outcome = 'hit';
      if (r.fetch !== undefined) {
        env.stats.bgfetch++;
        const bereq = missRequest(tx, env.via, false, env.rules);
        makeConditional(bereq, r.obj);
        void runFetch(env, { obj: r.fetch, bereq, tx, reason: 'bgfetch', stale: r.obj });
      }
      return 'deliver';
    case 'miss':
      env.stats.cache_miss++;
      tx.obj = r.obj;
      tx.stale = r.stale;
      tx.status = { fwd: r.reason === 'expired' ? 'miss' : r.reason };
      tx.outcome = 'miss';
      return 'miss';
    case 'hit-for-miss':
      env.stats.cache_hitmiss++;
      tx.obj = r.obj;
      tx.status = { fwd: 'uri-miss', detail: 'hit-for-miss' };
      tx.outcome = 'miss';
      return 'miss';
    case 'hit-for-pass':
      env.stats.cache_hitpass++;
      tx.status = { fwd: 'uri-miss', detail: 'hit-for-pass' };
      tx.outcome = 'pass';
      return 'pass';
  }
}

export function miss<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>): Step | Promise<Step> {
  const obj = tx.obj as CacheObject;
  // A hit-for-miss fetch cannot be stored as a whole object anyway: it forwards Range and conditionals like a pass.
  const bereq = missRequest(tx, env.via, tx.lookup === 'hit-for-miss', env.rules);
  const stale = tx.stale;
  if (stale !== undefined && makeConditional(bereq, stale)) tx.status = { ...tx.status, fwd: 'stale' };
  // The client: a response known not to be stored is abandoned when it left or leaves unread (fetch/fetch.ts commit);
  // a stored one is fetched on into the cache for the next client.
  void runFetch(env, { obj, bereq, tx, reason: 'fetch', stale, onInfo: interimTo(tx.res), client: () => tx.abortWatch });
  // A client's miss whose fetch is still waiting for its response head: the delivery's setup (the client's abort
  // signal, the wait for the head) runs after the origin request's write, not before it (issue 16, first byte).
  return obj.state === 'busy' && tx.req.segment === undefined ? afterOriginWrite() : 'deliver';
}

/**
 * The deliver step, one check phase later. undici writes a request on a reused keep-alive connection from an
 * Immediate (it first lets the poll phase read what the idle socket may hold: a stray response, a close), so that
 * write waits for everything that runs in this turn. An Immediate queued after the dispatch runs after that write;
 * the response head cannot come before it (it is read in a later poll phase), so the delivery still waits for it.
 */
function afterOriginWrite(): Promise<Step> {
  return new Promise((resolve) => setImmediate(resolve, 'deliver'));
}

export function pass<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>): Step | Promise<Step> {
  env.stats.s_pass++;
  const obj = new CacheObject(tx.key);
  tx.obj = obj;
  const key = tx.key !== '' ? tx.key : env.keyOf(tx.req, tx.ctx);
  if (typeof key !== 'string') return key.then((k) => passWith(env, tx, obj, k));
  return passWith(env, tx, obj, key);
}

function passWith<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>, obj: CacheObject, key: string): Step {
  const bereq = passRequest({ req: tx.req, key, pin: tx.pin }, env.via, tx.body);
  // A pass's fetch is its client's alone: the client leaving before the head drops the origin request at once (after
  // the head, its delivery's reader closing does: CacheObject.closeReader; before it no reader is open, and the fetch
  // went on to the orphan watch, 30 s by default). A client already gone: the fetch fails at once, nothing is sent.
  const watch = tx.abortWatch;
  const onGone = (): void => {
    if (obj.state === 'busy') obj.fetchController.abort(new ProxyError('CORE_ERR_CLIENT_GONE', 'the client of a pass left before its head', { source: 'downstream' }));
  };
  if (watch.aborted) onGone();
  else watch.addEventListener('abort', onGone);
  void runFetch(env, { obj, bereq, tx, reason: 'pass', onInfo: interimTo(tx.res) }).then(() => watch.removeEventListener('abort', onGone));
  return 'deliver';
}

/** vcl_synth: the synthetic response, through the responseFilter hook (which may restart). */
export function synth<Ctx>(env: ProxyEnv<Ctx>, tx: Tx<Ctx>): Step | Promise<Step> {
  return writeSynth(env, tx, tx.synth ?? { status: 500 });
}
