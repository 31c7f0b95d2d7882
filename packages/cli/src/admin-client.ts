import { CliError } from './errors.js';

/**
 * The CLI's side of the admin API: where it is and the token, from flags or SLUICE_ADMIN / SLUICE_ADMIN_TOKEN.
 * Requests go through global fetch.
 */
export interface AdminTarget {
  url: string;
  token: string;
}

export function adminTarget(flags: { admin?: string | undefined; token?: string | undefined }): AdminTarget {
  const url = (flags.admin ?? process.env['SLUICE_ADMIN'] ?? 'http://127.0.0.1:6082').replace(/\/+$/, '');
  if (!/^https?:\/\//.test(url)) throw new CliError('CLI_ERR_FLAG_INVALID', `--admin: "${url}" is not an http(s) URL (example: http://127.0.0.1:6082)`);
  const token = flags.token ?? process.env['SLUICE_ADMIN_TOKEN'];
  if (token === undefined || token === '') throw new CliError('CLI_ERR_FLAG_INVALID', 'no admin token: give --token or set SLUICE_ADMIN_TOKEN');
  return { url, token };
}

/**
 * Sends one request to the admin API and returns the response once it is known to be 2xx; an unreachable admin or
 * an error answer becomes a one-line CliError. The body is the caller's (JSON for calls, a stream for /log).
 */
export async function adminFetch(t: AdminTarget, method: 'GET' | 'POST', path: string, init: { body?: unknown; signal?: AbortSignal } = {}): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(`${t.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${t.token}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
      ...(init.signal === undefined ? {} : { signal: init.signal }),
    });
  } catch (e: unknown) {
    const cause = (e as { cause?: { code?: string } }).cause?.code;
    throw new CliError('CLI_ERR_ADMIN', `cannot reach the admin API at ${t.url}${cause === undefined ? '' : ` (${cause})`}`, { cause: e });
  }
  if (!res.ok) {
    const text = await res.text();
    let msg = text.trim();
    try {
      const j = JSON.parse(text) as { error?: unknown };
      if (typeof j.error === 'string') msg = j.error;
    } catch {
      // not JSON: keep the text
    }
    throw new CliError('CLI_ERR_ADMIN', `admin API ${method} ${path.split('?')[0] ?? path}: ${res.status} ${msg}`);
  }
  return res;
}

/** Calls the admin API and returns its answer (parsed when JSON). */
export async function adminCall(t: AdminTarget, method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
  const res = await adminFetch(t, method, path, { body });
  const text = await res.text();
  return (res.headers.get('content-type') ?? '').includes('json') ? (JSON.parse(text) as unknown) : text;
}
