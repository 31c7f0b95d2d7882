import { ProxyError } from '../errors.js';
import { Readable } from 'node:stream';

/**
 * Incremental request-body decoders (RFC 9112 §6.2 Content-Length, §7.1 chunked). `feed` takes bytes off the socket
 * and returns whatever lies beyond the end of this body (the next pipelined request), or undefined when all was
 * consumed. Decoded bytes are pushed into `stream`; `feed` reports backpressure through `wantsMore`.
 */
export interface BodyDecoder {
  readonly stream: Readable;
  /** True once the body's last byte was decoded. */
  readonly done: boolean;
  /** False when the stream's buffer is full: stop feeding until `stream` is read. */
  wantsMore: boolean;
  /** Body bytes decoded so far (payload, without chunked framing). */
  readonly bytes: number;
  feed(data: Buffer): Buffer | undefined;
  /** The connection closed before the body ended. */
  abort(err: Error): void;
}

abstract class DecoderBase implements BodyDecoder {
  readonly stream: Readable;
  done = false;
  wantsMore = true;
  constructor(onRead: () => void) {
    this.stream = new Readable({
      highWaterMark: 64 * 1024,
      read: () => {
        this.wantsMore = true;
        onRead();
      },
    });
    // The connection owns the fault (it answers 400 or closes); a reader, if there is one, gets the error through its
    // own listener. A body nobody reads (a GET with Content-Length, a request answered before its body was read) must
    // not turn the abort into an unhandled 'error' event that ends the process.
    this.stream.on('error', ignore);
  }
  /** Body bytes decoded so far (payload, without chunked framing). */
  bytes = 0;
  protected push(b: Buffer): void {
    this.bytes += b.length;
    if (b.length > 0 && !this.stream.push(b)) this.wantsMore = false;
  }
  protected end(): void {
    this.done = true;
    this.stream.push(null);
  }
  abort(err: Error): void {
    if (!this.done) this.stream.destroy(err);
  }
  abstract feed(data: Buffer): Buffer | undefined;
}

export class LengthDecoder extends DecoderBase {
  private remaining: number;
  constructor(length: number, onRead: () => void) {
    super(onRead);
    this.remaining = length;
  }
  feed(data: Buffer): Buffer | undefined {
    if (this.done) return data;
    const take = Math.min(this.remaining, data.length);
    this.remaining -= take;
    this.push(data.subarray(0, take));
    if (this.remaining === 0) this.end();
    return take < data.length ? data.subarray(take) : undefined;
  }
}

function ignore(): void {}

/** Errors in chunked framing; the connection answers 400 and closes. */
export class ChunkedFramingError extends ProxyError {
  constructor(message: string) {
    super('CORE_ERR_BAD_REQUEST', message, { source: 'downstream', status: 400 });
  }
}

/**
 * A chunk-size line (RFC 9112 §7.1, §7.1.1): chunk-size = 1*HEXDIG (at most 12 here, 2^48 bytes) then
 * chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ), a name a token and a value a token or a
 * quoted-string (RFC 9110 §5.6.2, §5.6.4). Anything else, control characters included, is a framing error: a lenient
 * reading here is one a front end may not share (request smuggling). Linear: no two alternatives match the same text.
 */
const TOKEN = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+";
const QUOTED = '"(?:[\\t !#-\\[\\]-~\\x80-\\xff]|\\\\[\\t -~\\x80-\\xff])*"';
const CHUNK_SIZE_LINE = new RegExp(`^([0-9a-fA-F]{1,12})(?:[ \\t]*;[ \\t]*${TOKEN}(?:[ \\t]*=[ \\t]*(?:${TOKEN}|${QUOTED}))?)*$`);

export class ChunkedDecoder extends DecoderBase {
  private state: 'size' | 'data' | 'data-crlf' | 'trailer' = 'size';
  private line = '';
  private remaining = 0;
  private readonly maxLine = 4096;
  /**
   * Bytes of trailer lines read so far. They are dropped, not counted as body: without a bound a client could keep
   * a body open for good by sending trailer fields (found in session 11's attack). The bound is a request head's.
   */
  private trailerBytes = 0;
  private readonly maxTrailerBytes = 64 * 1024;
  feed(data: Buffer): Buffer | undefined {
    let i = 0;
    while (i < data.length && !this.done) {
      if (this.state === 'data') {
        const take = Math.min(this.remaining, data.length - i);
        this.push(data.subarray(i, i + take));
        i += take;
        this.remaining -= take;
        if (this.remaining === 0) this.state = 'data-crlf';
        continue;
      }
      // Line-oriented states: collect up to LF.
      const lf = data.indexOf(10, i);
      const end = lf < 0 ? data.length : lf;
      this.line += data.toString('latin1', i, end);
      if (this.line.length > this.maxLine) throw new ChunkedFramingError('chunk line too long');
      if (this.state === 'trailer' && (this.trailerBytes += end - i) > this.maxTrailerBytes) throw new ChunkedFramingError('trailer section too large');
      if (lf < 0) return undefined;
      i = lf + 1;
      const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
      this.line = '';
      if (this.state === 'size') {
        const m = CHUNK_SIZE_LINE.exec(line);
        if (m === null) throw new ChunkedFramingError('invalid chunk size');
        this.remaining = parseInt(m[1] as string, 16);
        this.state = this.remaining === 0 ? 'trailer' : 'data';
      } else if (this.state === 'data-crlf') {
        if (line !== '') throw new ChunkedFramingError('missing CRLF after chunk data');
        this.state = 'size';
      } else if (line === '') {
        // Trailer section ends with an empty line; trailer fields are discarded (§7.1.2 allows it).
        this.end();
      }
    }
    return i < data.length ? data.subarray(i) : undefined;
  }
}
