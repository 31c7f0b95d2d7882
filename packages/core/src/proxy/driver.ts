import { CacheObject } from '../cache/cache-object.js';
import { ProxyError } from '../errors.js';
import type { ProxyEnv, Step, Tx } from '../context.js';
import { segmentRequestOf } from '../slicer/segment-request.js';
import { logRequest } from '../txlog/records.js';
import { newTx } from '../context.js';

/**
 * THE loop (Varnish's CNT_Request): runs steps until `stop` says so, and returns the step it stopped at. Client
 * requests run to 'done'; the slicer's segment subrequests stop where there is an object to read ('deliver') or where
 * policy answered instead. Steps that do not wait return a Step directly, so a hit costs no promise per step.
 *
 *   recv -> lookup -> (hit) ------------------------------> deliver
 *                  -> (busy: wait on the fetch, look up again)
 *                  -> (miss | hit-for-miss) -> miss -> deliver   (the fetch runs as its own task: fetch/)
 *                  -> (hit-for-pass) -> pass
 *        -> pass | pipe -> pass -> deliver
 *        -> synth
 *        -> restart -> recv again (from requestFilter or the deliver hook; past maxRestarts: synth 503)
 *        -> slice (segment subrequests through this same loop, stitched: slicer/)
 */
export type StepTable<Ctx> = Record<Exclude<Step, 'done'>, (tx: Tx<Ctx>) => Step | Promise<Step>>;

/**
 * Runs the steps from 'recv'. Synchronous as long as every step is: a hit returns its last Step with no promise at all
 * (an async function would cost a promise and a microtask hop per request). From the first step that waits, the rest
 * runs in a promise. A step that throws synchronously throws here; callers treat it as they treat a rejection.
 */
export function drive<Ctx>(steps: StepTable<Ctx>, tx: Tx<Ctx>, stop: (s: Step) => boolean): Step | Promise<Step> {
  let step: Step = 'recv';
  while (!stop(step)) {
    const next: Step | Promise<Step> = runStep(steps, step as Exclude<Step, 'done'>, tx);
    if (typeof next !== 'string') return next.then((s) => driveFrom(steps, tx, stop, s));
    step = next;
  }
  return step;
}

async function driveFrom<Ctx>(steps: StepTable<Ctx>, tx: Tx<Ctx>, stop: (s: Step) => boolean, from: Step): Promise<Step> {
  let step = from;
  while (!stop(step)) {
    const next: Step | Promise<Step> = runStep(steps, step as Exclude<Step, 'done'>, tx);
    step = typeof next === 'string' ? next : await next;
  }
  return step;
}

/**
 * steps[step](tx), with each step's function read as a named property: `steps[step]` with a changing `step` is a
 * megamorphic keyed load per step (a 1 KiB hit runs three).
 */
function runStep<Ctx>(steps: StepTable<Ctx>, step: Exclude<Step, 'done'>, tx: Tx<Ctx>): Step | Promise<Step> {
  switch (step) {
    case 'recv':
      return steps.recv(tx);
    case 'lookup':
      return steps.lookup(tx);
    case 'deliver':
      return steps.deliver(tx);
    case 'miss':
      return steps.miss(tx);
    case 'pass':
      return steps.pass(tx);
    case 'synth':
      return steps.synth(tx);
    case 'restart':
      return steps.restart(tx);
    case 'slice':
      return steps.slice(tx);
  }
}

export const untilDone = (s: Step): boolean => s === 'done';

/** Where a segment subrequest stops: an object to read, or an answer from policy (nothing to stitch). */
const segmentStop = (s: Step): boolean => s === 'deliver' || s === 'done' || s === 'synth' || s === 'slice';

/**
 * A segment subrequest: its own request (the client's headers without Range or conditionals, `segment` set) through
 * recv and lookup, and miss or pass when it is not cached, counted and logged as a request of its own. Returns once
 * it has an object to read (delivery is the parent's): synchronously when every step was (a cached segment: no
 * promise, no microtask hop), else as a promise.
 */
export function segmentRequest<Ctx>(env: ProxyEnv<Ctx>, steps: StepTable<Ctx>, parent: Tx<Ctx>, index: number, size: number, gen?: number): Tx<Ctx> | Promise<Tx<Ctx>> {
  const req = segmentRequestOf(parent.req, index, size, gen);
  const tx = newTx<Ctx>(parent.res, parent, req, env.newCtx(), parent.pin);
  env.stats.slice_segments++;
  if (parent.log !== undefined && env.txlog !== undefined) {
    const t = env.txlog.beginSubrequest(parent.log, 'slice');
    tx.log = t;
    t.timestamp('Start');
    logRequest(t, req);
  }
  const stopped = drive(steps, tx, segmentStop);
  if (typeof stopped === 'string') return segmentStopped(tx, stopped, index);
  return stopped.then((s) => segmentStopped(tx, s, index));
}

function segmentStopped<Ctx>(tx: Tx<Ctx>, stopped: Step, index: number): Tx<Ctx> {
  if (stopped !== 'deliver') {
    // Policy answered a segment itself: there is nothing to stitch.
    const obj = new CacheObject(tx.key);
    obj.fail(new ProxyError('CORE_ERR_UPSTREAM_UNAVAILABLE', `segment ${index} was answered by policy (synth ${tx.synth?.status ?? '?'})`, { source: 'internal', status: 503 }));
    tx.obj = obj;
  }
  return tx;
}
