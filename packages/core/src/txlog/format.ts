import { RAW_BEGIN, type RawRecords, type TxRecord, visitRaw } from './raw.js';

/**
 * The log's text formats: varnishlog text and NDJSON, from a group's records. They read a live transaction's records
 * as appended (`raw`, txlog/raw.ts) without building record objects, and a group read back from NDJSON through its
 * `records`; both give the same bytes.
 */

/** What the formatters need of a transaction (a live Transaction, or one read back from NDJSON). */
export interface TxView {
  vxid: number;
  type: string;
  records: readonly TxRecord[];
  /** A live transaction's records as appended (txlog/raw.ts); the formatters read these when present. */
  raw?: RawRecords | undefined;
  children: readonly TxView[];
  endSeq?: number;
}

/**
 * `request`: one block per client request with its fetches nested (`varnishlog -g request`); `vxid`: one per
 * transaction; `session`: one per client connection, its requests and their fetches nested, printed when it closes.
 */
export type TxGrouping = 'request' | 'vxid' | 'session';

/** Calls `fn` with each of `t`'s records, from `raw` when it has them. */
export function eachRecord(t: TxView, fn: (tag: string, value: string) => void): void {
  if (t.raw !== undefined) visitRaw(t.raw, fn);
  else for (const r of t.records) fn(r.tag, r.value);
}

/** Per nesting level, each tag's line prefix (`--  BerespStatus   `): built once, not per record. */
const prefixes: Array<Map<string, string>> = [];

function txBlock(t: TxView, level: number): string {
  const stars = level <= 3 ? '*'.repeat(level).padEnd(3) : `*${level}*`;
  let cache = prefixes[level];
  if (cache === undefined) prefixes[level] = cache = new Map();
  const tags = cache;
  let out = `${stars} << ${t.type.padEnd(8)} >> ${String(t.vxid).padEnd(10)}\n`;
  eachRecord(t, (tag, value) => {
    let prefix = tags.get(tag);
    if (prefix === undefined) {
      const dashes = level <= 3 ? '-'.repeat(level).padEnd(3) : `-${level}-`;
      tags.set(tag, (prefix = `${dashes} ${tag.padEnd(14)} `));
    }
    out += `${prefix}${value}\n`;
  });
  return out;
}

/**
 * varnishlog text for one group. `request`: header line, then records, children one level deeper, breadth-first as
 * varnishlog prints them. `vxid`: every transaction of the group as its own level-1 block, in the order they ended.
 */
export function formatVarnishlog(root: TxView, grouping: TxGrouping = 'request'): string {
  if (grouping === 'vxid') {
    const all: TxView[] = [];
    const collect = (t: TxView): void => {
      all.push(t);
      t.children.forEach(collect);
    };
    collect(root);
    all.sort((a, b) => (a.endSeq ?? 0) - (b.endSeq ?? 0));
    return all.map((t) => `${txBlock(t, 1)}\n`).join('');
  }
  // Breadth-first by tree depth; a restarted request is a child of the one it restarted but printed at that one's
  // level (vsl_dispatch.c: "Restarts stay at the same level as parent").
  let out = '';
  let level: Array<{ t: TxView; stars: number }> = [{ t: root, stars: 1 }];
  while (level.length > 0) {
    const next: Array<{ t: TxView; stars: number }> = [];
    for (const { t, stars } of level) {
      out += txBlock(t, stars);
      for (const c of t.children) next.push({ t: c, stars: isRestart(c) ? stars : stars + 1 });
    }
    level = next;
  }
  return `${out}\n`;
}

/** A request begun by a restart (`Begin req <old> restart`). */
export function isRestart(t: TxView): boolean {
  if (t.type !== 'Request') return false;
  const raw = t.raw;
  // The Begin record alone, without decoding the others.
  if (raw !== undefined && raw[0] === RAW_BEGIN) return `${raw[1]} ${raw[2]} ${raw[3]}`.endsWith(' restart');
  const begin = raw !== undefined ? (raw[0] === 'Begin' ? { tag: 'Begin', value: String(raw[1]) } : undefined) : t.records[0];
  return begin !== undefined && begin.tag === 'Begin' && begin.value.endsWith(' restart');
}

/** One JSON object per group: {vxid, type, records: [[tag, value], ...], children: [...]}. */
export function formatNdjson(root: TxView): string {
  return `${JSON.stringify(toJson(root))}\n`;
}

function toJson(t: TxView): unknown {
  const records: Array<[string, string]> = [];
  eachRecord(t, (tag, value) => records.push([tag, value]));
  return { vxid: t.vxid, type: t.type, records, children: t.children.map(toJson) };
}
