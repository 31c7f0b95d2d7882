import type { CacheObject } from '../cache/cache-object.js';

/**
 * An ESI program (Varnish's VEC, the OA_ESIDATA attribute): what delivering an ESI template means, parsed once while
 * its body arrives (esi/parser.ts) and kept beside the object it describes. Delivery walks it in order: each `bytes`
 * op is a stretch of the stored template sent as it is, each `include` op a subrequest whose body goes in its place.
 * Bytes between ops (ESI markup, `<esi:remove>` content) are skipped.
 *
 * Lifecycle: ops are only appended, and an op is never changed once a delivery may have seen it (ops are published
 * at the end of each parser call, in the same synchronous step as the body bytes they follow). `done` is set once
 * the whole template was parsed; then `esiFound` says whether it held any ESI at all (Varnish delivers a template
 * without ESI markup as a plain object, with its Content-Length).
 */
export type EsiOp =
  /** Template bytes [start, end) (byte offsets in the stored body). */
  | { kind: 'bytes'; start: number; end: number }
  /**
   * `<esi:include>`: the subrequest's URL (resolved against the template's URL), its Host when the src named one,
   * and whether the include carried `onerror="continue"`.
   */
  | { kind: 'include'; url: string; host: string | undefined; onErrorContinue: boolean };

export class EsiProgram {
  readonly ops: EsiOp[] = [];
  /** The whole template was parsed. */
  done = false;
  /** Any ESI element or `<!--esi` was seen (only final once `done`). */
  esiFound = false;
  /**
   * Body offset below which every byte is decided: in an op already, or skipped for good. A delivery waiting for the
   * next op may read (and drop) the body up to here, so an unstored template's fetch, held to its transit buffer by
   * that delivery's reader, is never stuck behind a long skipped stretch (`<esi:remove>` content, a long tag).
   */
  settled = 0;
}

/** The ESI program of each object made with `doEsi` (the cache room knows nothing of ESI). */
const programs = new WeakMap<CacheObject, EsiProgram>();

export function esiProgramOf(obj: CacheObject): EsiProgram | undefined {
  return programs.get(obj);
}

export function setEsiProgram(obj: CacheObject, program: EsiProgram): void {
  programs.set(obj, program);
}

/**
 * Whether delivering `obj` means running its ESI program: it has one, and unless it is still being parsed, one that
 * found ESI markup (a finished template without any is delivered as a plain object).
 */
export function isEsiTemplate(obj: CacheObject): boolean {
  const p = programs.get(obj);
  return p !== undefined && (!p.done || p.esiFound);
}
