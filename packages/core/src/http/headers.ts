/**
 * One header representation for all of core: a plain object with lowercase field names, a repeated field as an
 * array of values (the shape node:http and undici both produce). `set-cookie` is the field that is normally an array.
 */
export type HeaderMap = Record<string, string | string[]>;

/** Every value of `name` (lowercase) as one comma-joined string, or undefined when the field is absent. */
export function getHeader(headers: HeaderMap, name: string): string | undefined {
  const v = headers[name];
  if (typeof v === 'string') return v;
  // Anything else but an array is absent: `name` may come from a peer (a Vary list names request fields) and be the
  // name of an Object.prototype member such as `__proto__` or `constructor`, which a plain object "has".
  return Array.isArray(v) ? v.join(', ') : undefined;
}

/** Comma-separated list members of a field (RFC 9110 §5.6.1), trimmed, empty members dropped. */
export function getHeaderList(headers: HeaderMap, name: string): string[] {
  const v = getHeader(headers, name);
  if (v === undefined) return [];
  const out: string[] = [];
  for (const part of v.split(',')) {
    const t = part.trim();
    if (t !== '') out.push(t);
  }
  return out;
}

/** Appends a value to a field, keeping earlier values (used for Via and X-Forwarded-For). */
export function appendHeader(headers: HeaderMap, name: string, value: string): void {
  const prev = headers[name];
  if (prev === undefined) headers[name] = value;
  else headers[name] = `${Array.isArray(prev) ? prev.join(', ') : prev}, ${value}`;
}

/** A shallow copy without the fields in `drop`: arrays copied too, so edits to the copy never reach a stored object. */
export function cloneHeaders(headers: HeaderMap, drop?: ReadonlySet<string>): HeaderMap {
  const out: HeaderMap = {};
  for (const k in headers) {
    // Fields the caller does not want are left out here: a `delete` on the copy costs V8 a runtime call each (issue 16).
    if (drop?.has(k) === true) continue;
    const v = headers[k];
    if (v !== undefined) out[k] = Array.isArray(v) ? v.slice() : v;
  }
  return out;
}

/**
 * Hop-by-hop fields (RFC 9110 §7.6.1): a proxy MUST remove the fields that `Connection` names and the connection-
 * specific fields, in both directions. `Proxy-*` covers Proxy-Connection, Proxy-Authenticate, Proxy-Authorization.
 * `transfer-encoding` and `content-length` are framing: core recomputes them per hop, so they go too
 * (`keepContentLength` keeps the origin's length where it is still valid for the body we forward). `drop` names more
 * fields to leave out of the copy (cheaper than deleting them from it afterwards).
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
const NO_OPTS: { keepContentLength?: boolean; drop?: ReadonlySet<string> } = {};

export function stripHopByHop(headers: HeaderMap, opts: { keepContentLength?: boolean; drop?: ReadonlySet<string> } = NO_OPTS): HeaderMap {
  // The fields Connection names; no set built when there is no Connection field (most requests and responses).
  const named = headers['connection'] === undefined ? undefined : new Set(getHeaderList(headers, 'connection').map((s) => s.toLowerCase()));
  const out: HeaderMap = {};
  for (const k in headers) {
    if (HOP_BY_HOP.has(k) || named?.has(k) === true || k.startsWith('proxy-')) continue;
    if (k === 'content-length' && opts.keepContentLength !== true) continue;
    if (opts.drop?.has(k) === true) continue;
    const v = headers[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}
