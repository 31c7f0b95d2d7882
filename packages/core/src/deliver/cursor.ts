/**
 * Reads byte ranges, in ascending order, from a body that arrives as chunks: each `range` call yields the slices of
 * [start, end] (inclusive) and leaves the cursor after them, so several ranges share one pass over the body.
 */
export class BodyCursor {
  private readonly it: AsyncIterator<Buffer>;
  private offset = 0;
  private pending: Buffer | undefined;

  constructor(chunks: AsyncIterable<Buffer>) {
    this.it = chunks[Symbol.asyncIterator]();
  }

  async *range(start: number, end: number): AsyncGenerator<Buffer, void, undefined> {
    for (;;) {
      let chunk = this.pending;
      this.pending = undefined;
      if (chunk === undefined) {
        const n = await this.it.next();
        if (n.done === true) return;
        chunk = n.value;
      }
      const chunkStart = this.offset;
      const chunkEnd = chunkStart + chunk.length;
      if (chunkEnd <= start) {
        this.offset = chunkEnd;
        continue;
      }
      if (chunkStart > end) {
        this.pending = chunk;
        return;
      }
      const from = Math.max(0, start - chunkStart);
      const to = Math.min(chunk.length, end + 1 - chunkStart);
      yield chunk.subarray(from, to);
      if (to < chunk.length) {
        this.pending = chunk.subarray(to);
        this.offset = chunkStart + to;
        return;
      }
      this.offset = chunkEnd;
      if (this.offset > end) return;
    }
  }

  /** Releases the underlying reader. */
  async close(): Promise<void> {
    await this.it.return?.();
  }
}
