import { eachRecord, type TxView } from './format.js';
import { decodeRaw, type RawRecords, type TxRecord } from './raw.js';

/**
 * A group as it crosses to the log file's writer thread: nested arrays `[vxid, type, endSeq, raw, children]`, the
 * records as appended (txlog/raw.ts), so posting a group copies its strings and numbers and builds nothing first.
 */
export type WireGroup = [number, string, number, RawRecords, WireGroup[]];

export function toWire(v: TxView): WireGroup {
  let raw = v.raw;
  if (raw === undefined) {
    // A view without appended records (not one of this log's transactions): its records as tag/value pairs.
    const pairs: RawRecords = [];
    eachRecord(v, (tag, value) => pairs.push(tag, value));
    raw = pairs;
  }
  return [v.vxid, v.type, v.endSeq ?? 0, raw, v.children.map(toWire)];
}

/** The writer thread's view of a posted group (the formatters read `raw`; `records` is built only if asked for). */
class WireView implements TxView {
  readonly vxid: number;
  readonly type: string;
  readonly endSeq: number;
  readonly raw: RawRecords;
  readonly children: TxView[];
  constructor(w: WireGroup) {
    this.vxid = w[0];
    this.type = w[1];
    this.endSeq = w[2];
    this.raw = w[3];
    this.children = w[4].map((c) => new WireView(c));
  }
  get records(): TxRecord[] {
    return decodeRaw(this.raw);
  }
}

export function fromWire(w: WireGroup): TxView {
  return new WireView(w);
}
