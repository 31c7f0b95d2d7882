/**
 * Credentials in the transaction log. A log is read by more people, and kept longer, than the traffic it describes,
 * so by default the values of the fields that carry credentials are masked, keeping what helps reading the log: the
 * auth scheme, the cookie names, Set-Cookie's attributes. `TxLog`'s `logSecrets` turns this off.
 *
 *   authorization: Basic dXNlcjpwdw==        -> authorization: Basic ***
 *   cookie: sid=abc; theme=dark               -> cookie: sid=***; theme=***
 *   set-cookie: sid=abc; Path=/; HttpOnly     -> set-cookie: sid=***; Path=/; HttpOnly
 */

/** Lowercase names of the fields whose values are masked. */
const SECRET_FIELDS = new Set(['authorization', 'proxy-authorization', 'cookie', 'set-cookie']);

/** Whether `name` (lowercase) carries credentials. */
export function isSecretField(name: string): boolean {
  return SECRET_FIELDS.has(name);
}

/** The value of a secret field as logged: scheme, cookie names and cookie attributes kept, the rest `***`. */
export function maskSecret(name: string, value: string): string {
  switch (name) {
    case 'authorization':
    case 'proxy-authorization': {
      const sp = value.indexOf(' ');
      return sp > 0 ? `${value.slice(0, sp)} ***` : '***';
    }
    case 'cookie':
      return value
        .split(';')
        .map((pair) => maskPair(pair.trim()))
        .join('; ');
    default: {
      // set-cookie: the first pair is the cookie, what follows are its attributes (Path, Expires, HttpOnly, ...).
      const semi = value.indexOf(';');
      return semi < 0 ? maskPair(value) : `${maskPair(value.slice(0, semi))}${value.slice(semi)}`;
    }
  }
}

function maskPair(pair: string): string {
  const eq = pair.indexOf('=');
  return eq < 0 ? '***' : `${pair.slice(0, eq)}=***`;
}

/** A `name: value` header line with a secret value masked; other lines as they are. */
export function maskHeaderLine(line: string): string {
  // Only names starting a, c, p or s can be secret: most lines are passed over without a slice.
  const c = line.charCodeAt(0) | 0x20;
  if (c !== 0x61 && c !== 0x63 && c !== 0x70 && c !== 0x73) return line;
  const colon = line.indexOf(':');
  if (colon <= 0) return line;
  const name = line.slice(0, colon).toLowerCase();
  if (!SECRET_FIELDS.has(name)) return line;
  return `${line.slice(0, colon)}: ${maskSecret(name, line.slice(colon + 1).trim())}`;
}

/** Raw head bytes (a refused request's, latin1) with every secret header line's value masked. */
export function maskRawHead(text: string): string {
  return text.replace(/^([!#$%&'*+.^_`|~0-9A-Za-z-]+)([ \t]*:[^\r\n]*)/gm, (line) => maskHeaderLine(line));
}
