/** A position in a cache object's body, owned by one client delivery. */
export interface ObjectReader {
  /** Absolute index of the next chunk to read. */
  chunkIndex: number;
  /** Bytes this reader has consumed. */
  offset: number;
  closed: boolean;
}

/** A sliced representation: segment size, whole length, the generation its segment keys carry, those keys stored. */
export interface SliceMeta {
  size: number;
  total: number;
  gen: number;
  segments: Set<string>;
}
