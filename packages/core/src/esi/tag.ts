/**
 * One ESI element's text (what follows `<esi:` or `</esi:` up to the `>`), read as Varnish's VEP reads it
 * (bin/varnishd/cache/cache_esi_parse.c): the element name, its attributes, the final `/`, and for an include its
 * `src` resolved as Varnish resolves it. Pure; the messages are Varnish's own.
 */

export type EsiElement = 'include' | 'remove' | 'comment';

/** The parsed tag, or the error that makes the parser skip it. */
export type ParsedTag = { error: string } | { name: EsiElement; empty: boolean; src: string[]; onerror: string | undefined };

const ELEMENTS: readonly EsiElement[] = ['include', 'remove', 'comment'];

const isWs = (c: string | undefined): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r';
/** XML NameStartChar, as Varnish's vct_isxmlnamestart (letters, '_', ':', and anything non-ASCII). */
function isNameStart(c: string | undefined): boolean {
  if (c === undefined) return false;
  const x = c.charCodeAt(0) | 0x20;
  return (x >= 0x61 && x <= 0x7a) || c === '_' || c === ':' || c.charCodeAt(0) >= 0x80;
}
function isNameChar(c: string | undefined): boolean {
  return isNameStart(c) || c === '.' || c === '-' || (c !== undefined && c >= '0' && c <= '9');
}

/** Reads an ESI element's text (without `<esi:` and `>`). */
export function parseTag(text: string): ParsedTag {
  let name: EsiElement | undefined;
  for (const n of ELEMENTS) if (text.startsWith(n)) name = n;
  if (name === undefined) return { error: 'ESI 1.0 <esi:bogus> element' };
  const attrs = parseAttrs(text.slice(name.length), name === 'include');
  return 'error' in attrs ? attrs : { name, ...attrs };
}

type Attrs = { error: string } | { empty: boolean; src: string[]; onerror: string | undefined };

/** Attributes as VEP's INTAG/ATTR states read them: values quoted, or unquoted up to whitespace. */
function parseAttrs(rest: string, collect: boolean): Attrs {
  let i = 0;
  let canAttr = false;
  let empty = false;
  const src: string[] = [];
  let onerror: string | undefined;
  for (;;) {
    while (i < rest.length && isWs(rest[i]) && !empty) {
      i++;
      canAttr = true;
    }
    if (i >= rest.length) return { empty, src, onerror };
    if (rest[i] === '/' && !empty) {
      i++;
      empty = true;
      continue;
    }
    if (empty) return { error: "XML 1.0 '>' does not follow '/' in tag" };
    if (!canAttr || !isNameStart(rest[i])) return { error: 'XML 1.0 Illegal attribute start char' };
    let j = i;
    while (j < rest.length && isNameChar(rest[j])) j++;
    const name = rest.slice(i, j);
    if (rest[j] !== '=') {
      if (j < rest.length && !isWs(rest[j]) && rest[j] !== '/') return { error: 'XML 1.0 Illegal attr char' };
      i = j;
      continue;
    }
    const v = attrValue(rest, j + 1);
    if ('error' in v) return v;
    i = v.next;
    if (collect && name === 'src') src.push(v.value);
    if (collect && name === 'onerror') onerror = v.value;
  }
}

/** An attribute value starting at `at` (after the `=`). */
function attrValue(rest: string, at: number): { error: string } | { value: string; next: number } {
  const d = rest[at];
  if (d === undefined) return { error: 'XML 1.0 Missing end attribute delimiter' };
  if (d === '"' || d === "'") {
    const k = rest.indexOf(d, at + 1);
    return k < 0 ? { error: 'XML 1.0 Missing end attribute delimiter' } : { value: rest.slice(at + 1, k), next: k + 1 };
  }
  if (isWs(d)) return { error: 'XML 1.0 Illegal attribute delimiter' };
  // Unquoted: up to whitespace; the tag's '>' before any is an error in VEP.
  let k = at;
  while (k < rest.length && !isWs(rest[k])) k++;
  return k >= rest.length ? { error: 'XML 1.0 Missing end attribute delimiter' } : { value: rest.slice(at, k), next: k + 1 };
}

/** Where an include goes: a URL (origin-form) and the Host to send when the src named one. */
export type IncludeTarget = { url: string; host: string | undefined } | { error: string; warn?: true };

/**
 * Resolves an include's src as Varnish does: `http://host/path` sets Host; `https://` is ignored (a warning, as
 * without feature esi_ignore_https); `/path` is taken as it is; anything else is relative to the directory of
 * `baseUrl` (the backend request's URL, up to its last `/` before any `?`). XML entities in the path are decoded.
 */
export function resolveSrc(src: string, baseUrl: string): IncludeTarget {
  if (/[ \t\r\n]/.test(src)) return { error: 'ESI 1.0 <esi:include> has whitespace in src= attribute' };
  let host: string | undefined;
  let path: string;
  if (src.length > 7 && src.startsWith('http://')) {
    const rest = src.slice(7);
    const k = rest.indexOf('/');
    if (k < 0) return { error: 'ESI 1.0 <esi:include> invalid src= URL' };
    host = rest.slice(0, k);
    path = rest.slice(k);
  } else if (src.length > 8 && src.startsWith('https://')) {
    return { error: 'ESI 1.0 <esi:include> with https:// ignored', warn: true };
  } else if (src.startsWith('/')) {
    path = src;
  } else {
    const q = baseUrl.indexOf('?');
    const dir = baseUrl.slice(0, Math.max(0, (q < 0 ? baseUrl : baseUrl.slice(0, q)).lastIndexOf('/')));
    path = `${dir}/${src}`;
  }
  return { url: decodeEntities(path), host: host === '' ? undefined : host };
}

const ENTITIES: Record<string, string> = { '&apos;': "'", '&quot;': '"', '&lt;': '<', '&gt;': '>', '&amp;': '&' };

function decodeEntities(s: string): string {
  return s.includes('&') ? s.replace(/&(?:apos|quot|lt|gt|amp);/g, (m) => ENTITIES[m] ?? m) : s;
}
