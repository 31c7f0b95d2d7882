import { eachRecord, type TxView } from './format.js';
import { decodeRaw, type RawRecords, type TxRecord } from './raw.js';

/**
 * Groups as they cross to the log file's writer thread, built for a cheap `postMessage`: structured clone costs
 * about 0.1 us per array element (measured for issue 16), more than appending the record did. So a batch of groups
 * goes as two typed arrays (moved, not copied) and one array of distinct strings: each transaction, depth first, as
 * `vxid, type, endSeq, records' length, children's count, records...`, every slot a number or an index into the
 * strings (`isString` says which). A string that recurs (tags, labels, header names, the same URL) is sent once.
 */
export interface WireBatch {
  values: Float64Array;
  isString: Uint8Array;
  strings: string[];
}

export function encodeBatch(groups: readonly TxView[]): WireBatch {
  let slots = 0;
  const count = (v: TxView): void => {
    slots += 5 + rawOf(v).length;
    for (const c of v.children) count(c);
  };
  for (const g of groups) count(g);
  const values = new Float64Array(slots);
  const isString = new Uint8Array(slots);
  const strings: string[] = [];
  const index = new Map<string, number>();
  let n = 0;
  const str = (s: string): number => {
    let i = index.get(s);
    if (i === undefined) {
      i = strings.length;
      strings.push(s);
      index.set(s, i);
    }
    return i;
  };
  const put = (v: TxView): void => {
    const raw = rawOf(v);
    values[n++] = v.vxid;
    isString[n] = 1;
    values[n++] = str(v.type);
    values[n++] = v.endSeq ?? 0;
    values[n++] = raw.length;
    values[n++] = v.children.length;
    for (let i = 0; i < raw.length; i++) {
      const x = raw[i] as string | number;
      if (typeof x === 'number') values[n++] = x;
      else {
        isString[n] = 1;
        values[n++] = str(x);
      }
    }
    for (const c of v.children) put(c);
  };
  for (const g of groups) put(g);
  return { values, isString, strings };
}

/** The records as appended, or (a view that is not one of this log's transactions) its records as tag/value pairs. */
function rawOf(v: TxView): RawRecords {
  if (v.raw !== undefined) return v.raw;
  const pairs: RawRecords = [];
  eachRecord(v, (tag, value) => pairs.push(tag, value));
  return pairs;
}

/** The writer thread's view of a posted group (the formatters read `raw`; `records` is built only if asked for). */
class WireView implements TxView {
  readonly children: TxView[] = [];
  constructor(
    readonly vxid: number,
    readonly type: string,
    readonly endSeq: number,
    readonly raw: RawRecords,
  ) {}
  get records(): TxRecord[] {
    return decodeRaw(this.raw);
  }
}

export function decodeBatch(b: WireBatch): TxView[] {
  const { values, isString, strings } = b;
  let n = 0;
  const slot = (): string | number => {
    const v = values[n] as number;
    return isString[n++] === 1 ? (strings[v] as string) : v;
  };
  const take = (): TxView => {
    const vxid = slot() as number;
    const type = slot() as string;
    const endSeq = slot() as number;
    const len = slot() as number;
    const kids = slot() as number;
    const raw: RawRecords = new Array<string | number>(len);
    for (let i = 0; i < len; i++) raw[i] = slot();
    const v = new WireView(vxid, type, endSeq, raw);
    for (let i = 0; i < kids; i++) v.children.push(take());
    return v;
  };
  const out: TxView[] = [];
  while (n < values.length) out.push(take());
  return out;
}
