import type { SlabPool } from '../cache/slab-pool.js';
import { bodyMismatch } from './bodies.js';
import type { ProxyHarness } from './harness.js';

/** The close reasons (SessClose words) of the proxy's client connections open now, filled in as they close. */
export function closeReasons(px: ProxyHarness): string[] {
  const out: string[] = [];
  for (const c of px.proxy.server.connections) c.context.onClose.add(() => out.push(c.context.closeReason ?? '?'));
  return out;
}

/** An assertion message for a body that is not `want` ('' when it is): how it differs, and the state around it. */
export function explain(got: Buffer, want: Buffer, ctx: Record<string, unknown>, pool: SlabPool, px: ProxyHarness): string {
  const m = bodyMismatch(got, want);
  if (m === '') return '';
  const counts = { ...pool.counts, inUse: pool.inUse, free: pool.freeCount, storeBytes: px.proxy.store.bytes, objects: px.proxy.store.objectCount };
  return `${m}; ${JSON.stringify({ ...ctx, pool: counts })}`;
}
