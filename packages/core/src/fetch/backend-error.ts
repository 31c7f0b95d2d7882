import http from 'node:http';
import type { CacheObject } from '../cache/cache-object.js';
import type { ProxyEnv } from '../context.js';
import type { HeaderMap } from '../http/headers.js';
import type { BackendErrorAction, SentRequest, SynthSpec } from '../policy/hooks.js';
import { logVcl } from '../txlog/records.js';
import type { Transaction } from '../txlog/txlog.js';
import type { UpstreamRequest } from '../upstream.js';

/**
 * vcl_backend_error and retries (Varnish's vbf_stp_error, vbf_stp_retry): when a fetch got no response the
 * backendError hook may retry it or make the response; upstreamResponseFilter may retry too. A retry sends the request
 * again (upstreamRequestFilter runs again), counted in `bereq.retries` up to maxRetries, and is logged as Varnish logs
 * it: the backend transaction ends with `Link bereq N retry`, the next begins with `Begin bereq <old> retry`.
 */

/** The request a fetch sent, as the upstream hooks see it. */
export function sentRequest(bereq: UpstreamRequest, retries: number): SentRequest {
  return { method: bereq.method, url: bereq.path, headers: bereq.headers, backend: bereq.backend, retries };
}

/** Runs the backendError hook; undefined when there is none or it left the default. */
export async function backendErrorAction<Ctx>(
  env: ProxyEnv<Ctx>,
  bereq: UpstreamRequest,
  retries: number,
  failure: { status: number; message: string },
  ctx: Ctx,
  be: Transaction | undefined,
): Promise<BackendErrorAction | undefined> {
  const hook = env.hooks.backendError;
  if (hook === undefined) return undefined;
  const action = await hook({ bereq: sentRequest(bereq, retries), status: failure.status, message: failure.message }, ctx);
  logVcl(be, 'BACKEND_ERROR', action === undefined ? 'deliver' : action === 'retry' ? 'retry' : 'deliver');
  return action;
}

/** Whether a retry may happen: under maxRetries, and no request body (it was sent already and is not kept). */
export function canRetry<Ctx>(env: ProxyEnv<Ctx>, bereq: UpstreamRequest, retries: number, be: Transaction | undefined): boolean {
  if (bereq.body !== null) {
    be?.add('Error', 'Retry not possible, the request body was sent already');
    return false;
  }
  if (retries >= env.maxRetries) {
    be?.add('VCL_Error', 'Too many retries, failing');
    return false;
  }
  return true;
}

/**
 * The next backend transaction of a retry (VSL_ChgId): `Timestamp Retry` and `Link bereq N retry` on the old one,
 * which ends, and a new one `Begin bereq <old> retry`, a child of the old one in the group.
 */
export function logRetry<Ctx>(env: ProxyEnv<Ctx>, old: Transaction | undefined): Transaction | undefined {
  if (old === undefined || env.txlog === undefined) return old;
  old.timestamp('Retry');
  const t = env.txlog.beginBereq(old, 'retry');
  old.add('Link', `bereq ${t.vxid} retry`);
  old.end();
  t.timestamp('Start');
  return t;
}

/**
 * Fills `obj` with the synthetic response backendError made (vcl_backend_error's `synthetic()`): never stored, the
 * key released so waiting requests look up again, every reader of this fetch gets it.
 */
export function fillSynthetic<Ctx>(env: ProxyEnv<Ctx>, obj: CacheObject, synth: SynthSpec): void {
  const body = Buffer.from(synth.body ?? `${synth.status} ${http.STATUS_CODES[synth.status] ?? ''}\n`);
  const headers: HeaderMap = { 'content-type': 'text/plain; charset=utf-8' };
  for (const k in synth.headers) {
    const v = synth.headers[k];
    if (v !== undefined) headers[k.toLowerCase()] = v;
  }
  obj.responseTimeMs = env.now();
  obj.status = synth.status;
  obj.headers = headers;
  obj.bodyless = synth.status === 204 || synth.status === 304 || synth.status < 200;
  obj.expectedLength = obj.bodyless ? 0 : body.length;
  obj.stored = false;
  obj.notStoredReason = 'policy';
  env.store.releaseBusy(obj);
  obj.setState('stream');
  if (!obj.bodyless && body.length > 0) obj.extend(body);
  obj.finish();
}
