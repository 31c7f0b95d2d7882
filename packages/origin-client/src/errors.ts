/**
 * Errors of @sluice/origin-client: stable codes, the shared shape (source, retry, status, cause).
 */
export type OriginErrorCode =
  | 'ORIGIN_ERR_CONNECT'
  | 'ORIGIN_ERR_TIMEOUT'
  | 'ORIGIN_ERR_ABORTED'
  | 'ORIGIN_ERR_REQUEST'
  | 'ORIGIN_ERR_CONFIG'
  | 'ORIGIN_ERR_NO_BACKEND'
  | 'ORIGIN_ERR_QUEUE_FULL'
  | 'ORIGIN_ERR_QUEUE_TIMEOUT'
  | 'ORIGIN_ERR_TUNNEL_DENIED'
  | 'ORIGIN_ERR_PIN_LOST';

export class OriginError extends Error {
  override readonly name = 'OriginError';
  readonly code: OriginErrorCode;
  readonly source = 'upstream' as const;
  readonly retry: 'yes' | 'no' | 'reused-only';
  readonly status: number;

  constructor(code: OriginErrorCode, message: string, opts: { status?: number; retry?: 'yes' | 'no' | 'reused-only'; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.status = opts.status ?? 503;
    this.retry = opts.retry ?? 'no';
  }
}
