/**
 * Errors of @sluice/core. One class, one shape: a stable `code`, where the fault came from (`source`), whether a
 * retry could help (`retry`), an optional HTTP status for the client, and the original error as `cause`.
 * Every code is listed in docs/errors.md.
 */
export type ProxyErrorCode =
  | 'CORE_ERR_UPSTREAM_UNAVAILABLE'
  | 'CORE_ERR_UPSTREAM_BODY'
  | 'CORE_ERR_UPSTREAM_LENGTH_MISMATCH'
  | 'CORE_ERR_CLIENT_GONE'
  | 'CORE_ERR_HOOK_FAILED'
  | 'CORE_ERR_SHUTDOWN'
  | 'CORE_ERR_NO_READER'
  | 'CORE_ERR_SEGMENT_MISMATCH'
  | 'CORE_ERR_SEGMENT_FAILED'
  | 'CORE_ERR_ESI_INCLUDE_FAILED'
  | 'CORE_ERR_BAN_SYNTAX'
  | 'CORE_ERR_BAD_REQUEST'
  | 'CORE_ERR_BODY_UNREAD'
  | 'CORE_ERR_BODY_TIMEOUT'
  | 'CORE_ERR_BODY_TOO_LARGE'
  | 'CORE_ERR_INVALID_HEADER'
  | 'CORE_ERR_CONFIG'
  | 'CORE_ERR_INTERNAL';

export type ErrorSource = 'upstream' | 'downstream' | 'internal';

export class ProxyError extends Error {
  override readonly name = 'ProxyError';
  readonly code: ProxyErrorCode;
  readonly source: ErrorSource;
  readonly retry: 'yes' | 'no' | 'reused-only';
  readonly status: number | undefined;

  constructor(
    code: ProxyErrorCode,
    message: string,
    opts: { source: ErrorSource; status?: number; retry?: 'yes' | 'no' | 'reused-only'; cause?: unknown },
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.source = opts.source;
    this.status = opts.status;
    this.retry = opts.retry ?? 'no';
  }
}

export function isProxyError(e: unknown): e is ProxyError {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'string' && e.name === 'ProxyError';
}

/** The message of any thrown value, for logs. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${e.message}` : e.message;
  }
  return String(e);
}
