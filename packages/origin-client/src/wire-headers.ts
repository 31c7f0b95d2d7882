/** A character past one byte: it can only come from policy (what came from a socket was decoded as latin1). */
const ABOVE_LATIN1 = /[\u0100-\uffff]/;

type HeaderValue = string | string[] | number | undefined | null;

/**
 * Request headers as undici writes them (latin1: one byte per character; it refuses characters above U+00FF). A value
 * with such a character, which a policy hook set, becomes its UTF-8 bytes, as Varnish sends VCL strings; the others
 * are kept as they are (one byte per character). The object is copied only when a value changes. CR, LF and NUL are
 * still refused by undici (the fetch fails).
 */
export function wireHeaders<H>(headers: H): H {
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) return headers;
  const h = headers as Record<string, HeaderValue>;
  let out: Record<string, HeaderValue> | undefined;
  for (const k in h) {
    const v = h[k];
    if (typeof v === 'string') {
      if (ABOVE_LATIN1.test(v)) (out ??= { ...h })[k] = utf8AsLatin1(v);
    } else if (Array.isArray(v) && v.some((x) => ABOVE_LATIN1.test(x))) {
      (out ??= { ...h })[k] = v.map(utf8AsLatin1);
    }
  }
  return (out ?? headers) as H;
}

function utf8AsLatin1(v: string): string {
  return Buffer.from(v, 'utf8').toString('latin1');
}
