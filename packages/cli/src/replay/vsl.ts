import { parseNdjsonGroup, type TxView } from '@sluice/core';

/**
 * Readers for Varnish shared-memory-log (VSL) renderings: varnishlog text in the grouped modes (`-g request`,
 * `-g vxid`, `-g session`), `-g raw` text, the binary file `varnishlog -w` writes, and Sluice's own NDJSON. Every reader
 * produces the same thing: transactions with their records in order. Nesting is rebuilt from each transaction's
 * `Begin <type> <parent> <reason>` record, never from its position in the file (shared/varnishlog/FORMAT.md §3:
 * blocks are breadth-first, so a BeReq header need not follow its own Request).
 */

export interface VslRecord {
  tag: string;
  value: string;
}

export interface VslTx {
  vxid: number;
  /** Session, Request, BeReq (as in the header line), or the type named by `Begin` when there is no header. */
  type: string;
  records: VslRecord[];
  /** From `Begin`: the parent's vxid (0 for sessions) and the reason (rxreq, fetch, pass, bgfetch, esi, restart, …). */
  parentVxid: number | undefined;
  reason: string | undefined;
  /** False when the input ended before `End`, or varnishlog closed it itself (`End synth`, `VSL timeout`). */
  complete: boolean;
  /** Where it came from, for messages: "request.log block 3" or "line 120". */
  ref: string;
  /** Index of the block (grouped text) the transaction was printed in; parents are looked up there first. */
  block: number;
  parent?: VslTx | undefined;
  children: VslTx[];
}

export interface ParsedLog {
  transactions: VslTx[];
  /** Lines that fit none of the layouts, with a reason (the transactions around them are kept). */
  problems: Array<{ ref: string; reason: string }>;
}

const HEADER = /^(\*{1,3}|\*\d+\*)\s+<< (\w+)\s*>> (\d+)\s*$/;
const RECORD = /^(-{1,3}|-\d+-)\s/;
const RAW = /^\s*(\d+) (\S+)\s+([cb-])(?: (.*))?$/;

const TYPES: Record<string, string> = { sess: 'Session', req: 'Request', bereq: 'BeReq' };

function newTx(vxid: number, type: string, ref: string, block: number): VslTx {
  return { vxid, type, records: [], parentVxid: undefined, reason: undefined, complete: false, ref, block, children: [] };
}

function addRecord(tx: VslTx, tag: string, value: string): void {
  tx.records.push({ tag, value });
  if (tag === 'Begin' && tx.parentVxid === undefined) {
    const [kind, parent, reason] = value.split(' ');
    if (tx.type === '' || tx.type === 'Unknown') tx.type = TYPES[kind ?? ''] ?? tx.type;
    const p = Number(parent);
    tx.parentVxid = Number.isInteger(p) ? p : undefined;
    tx.reason = reason;
  } else if (tag === 'End') {
    tx.complete = value !== 'synth';
  } else if (tag === 'VSL' && /timeout|overflow/.test(value)) {
    tx.complete = false;
  }
}

/** True when `text` looks like grouped varnishlog output (a transaction header line comes first). */
export function isGroupedText(text: string): boolean {
  const first = firstLine(text);
  return first !== undefined && HEADER.test(first);
}

/** True when `text` looks like `varnishlog -g raw` output. */
export function isRawText(text: string): boolean {
  const first = firstLine(text);
  return first !== undefined && RAW.test(first);
}

function firstLine(text: string): string | undefined {
  for (const line of text.split('\n', 50)) if (line.trim() !== '') return line.replace(/\r$/, '');
  return undefined;
}

/**
 * Grouped text: header lines start transactions, record lines belong to the last header, blank lines end blocks.
 * The value starts at column 19 and is taken verbatim (it may be empty, start with a space or hold TABs).
 */
export function parseGroupedText(text: string, name = 'log'): ParsedLog {
  const transactions: VslTx[] = [];
  const problems: ParsedLog['problems'] = [];
  let block = 0;
  let blockOpen = false;
  let current: VslTx | undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).replace(/\r$/, '');
    if (line.trim() === '') {
      if (blockOpen) block++;
      blockOpen = false;
      current = undefined;
      continue;
    }
    blockOpen = true;
    const h = HEADER.exec(line);
    if (h !== null) {
      current = newTx(Number(h[3]), h[2] as string, `${name} line ${i + 1}`, block);
      transactions.push(current);
      continue;
    }
    if (RECORD.test(line) && current !== undefined) {
      addRecord(current, line.slice(4, 18).trimEnd(), line.length > 19 ? line.slice(19) : '');
      continue;
    }
    problems.push({ ref: `${name} line ${i + 1}`, reason: current === undefined ? 'record outside any transaction' : 'not a varnishlog line' });
  }
  link(transactions);
  return { transactions, problems };
}

/**
 * `-g raw`: one record per line, transactions interleaved. A vxid's records go to its open transaction; a `Begin` for a
 * vxid whose transaction already ended starts a new one (vxids repeat across varnishd restarts). vxid 0 (CLI) is
 * not a transaction.
 */
export function parseRawText(text: string, name = 'log'): ParsedLog {
  const transactions: VslTx[] = [];
  const problems: ParsedLog['problems'] = [];
  const open = new Map<number, VslTx>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).replace(/\r$/, '');
    if (line.trim() === '') continue;
    const m = RAW.exec(line);
    if (m === null) {
      problems.push({ ref: `${name} line ${i + 1}`, reason: 'not a varnishlog -g raw line' });
      continue;
    }
    const vxid = Number(m[1]);
    if (vxid === 0) continue;
    // The value starts after "<vxid:10> <tag:14> <c|b|-> ", i.e. at column 28 in the fixed layout.
    const value = line.length > 28 && line[26] === m[3] ? line.slice(28) : (m[4] ?? '');
    addRawRecord(open, transactions, vxid, m[2] as string, value, `${name} line ${i + 1}`);
  }
  link(transactions);
  return { transactions, problems };
}

function addRawRecord(open: Map<number, VslTx>, all: VslTx[], vxid: number, tag: string, value: string, ref: string): void {
  let tx = open.get(vxid);
  if (tx === undefined || (tag === 'Begin' && tx.records.length > 0)) {
    tx = newTx(vxid, '', ref, 0);
    open.set(vxid, tx);
    all.push(tx);
  }
  addRecord(tx, tag, value);
  if (tag === 'End') open.delete(vxid);
}

/**
 * The binary log `varnishlog -w` writes (Varnish 6 and 7, 32-bit vxids): the 4-byte magic "VSL\0", then records of
 * two little-endian 32-bit words (tag << 24 | length; vxid with the client/backend marker bits) and a NUL-terminated
 * payload padded to 4 bytes. Tag numbers are those of Varnish 7.1's include/tbl/vsl_tags.h.
 */
export function isBinaryVsl(buf: Buffer): boolean {
  return buf.length >= 4 && buf.toString('latin1', 0, 4) === 'VSL\0';
}

export function parseBinaryVsl(buf: Buffer, name = 'log'): ParsedLog {
  const transactions: VslTx[] = [];
  const problems: ParsedLog['problems'] = [];
  const open = new Map<number, VslTx>();
  let off = 4;
  let n = 0;
  while (off + 8 <= buf.length) {
    const w0 = buf.readUInt32LE(off);
    const w1 = buf.readUInt32LE(off + 4);
    const len = w0 & 0xffff;
    const tagNo = w0 >>> 24;
    const end = off + 8 + len;
    if (end > buf.length) {
      problems.push({ ref: `${name} record ${n + 1}`, reason: `truncated record (${len} bytes announced, ${buf.length - off - 8} left)` });
      break;
    }
    const vxid = w1 & 0x3fffffff;
    n++;
    // Text payloads end in a NUL that is not part of the value.
    let payloadEnd = end;
    if (payloadEnd > off + 8 && buf[payloadEnd - 1] === 0) payloadEnd--;
    const tag = VSL_TAGS[tagNo] ?? `Tag${tagNo}`;
    if (vxid !== 0) addRawRecord(open, transactions, vxid, tag, buf.toString('utf8', off + 8, payloadEnd), `${name} record ${n}`);
    off += 8 + ((len + 3) & ~3);
  }
  link(transactions);
  return { transactions, problems };
}

/** Sluice's NDJSON log: one group per line, read with core's own reader (`parseNdjsonGroup`). */
export function parseNdjson(text: string, name = 'log'): ParsedLog {
  const transactions: VslTx[] = [];
  const problems: ParsedLog['problems'] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === '') continue;
    const group = parseNdjsonGroup(line);
    if (group === undefined) {
      problems.push({ ref: `${name} line ${i + 1}`, reason: line.startsWith('{') ? 'not a Sluice log group (truncated line?)' : 'not JSON' });
      continue;
    }
    const walk = (v: TxView): void => {
      const tx = newTx(v.vxid, v.type, `${name} line ${i + 1}`, i);
      for (const r of v.records) addRecord(tx, r.tag, r.value);
      transactions.push(tx);
      v.children.forEach(walk);
    };
    walk(group);
  }
  link(transactions);
  return { transactions, problems };
}

/** Attaches each transaction to its parent: one in the same block if there is one, else the latest with that vxid. */
function link(all: VslTx[]): void {
  const byBlock = new Map<string, VslTx>();
  const latest = new Map<number, VslTx>();
  for (const t of all) {
    byBlock.set(`${t.block}:${t.vxid}`, t);
    latest.set(t.vxid, t);
  }
  for (const t of all) {
    if (t.parentVxid === undefined || t.parentVxid === 0) continue;
    const p = byBlock.get(`${t.block}:${t.parentVxid}`) ?? latest.get(t.parentVxid);
    if (p === undefined || p === t) continue;
    t.parent = p;
    p.children.push(t);
  }
}

/** The first value of `tag`, or undefined. */
export function first(t: VslTx, tag: string): string | undefined {
  for (const r of t.records) if (r.tag === tag) return r.value;
  return undefined;
}

/** The last value of `tag`, or undefined. */
export function last(t: VslTx, tag: string): string | undefined {
  for (let i = t.records.length - 1; i >= 0; i--) if ((t.records[i] as VslRecord).tag === tag) return (t.records[i] as VslRecord).value;
  return undefined;
}

/** `Timestamp <label>: abs since-start since-last` → [abs, since-start] in seconds, or undefined. */
export function timestamp(t: VslTx, label: string): [number, number] | undefined {
  const prefix = `${label}: `;
  for (const r of t.records) {
    if (r.tag !== 'Timestamp' || !r.value.startsWith(prefix)) continue;
    const [abs, since] = r.value.slice(prefix.length).split(' ').map(Number);
    if (abs !== undefined && Number.isFinite(abs)) return [abs, since ?? 0];
  }
  return undefined;
}

/**
 * VSL tag numbers of Varnish 7.1 (include/tbl/vsl_tags.h order, from 1). Only the binary format needs them. Every
 * number the shared sample uses was checked against its `-g raw` rendering (CLI 3 ... VCL_use 94); 84-90 are not
 * pinned by the sample and 90 is left unnamed (it prints as Tag90).
 */
const VSL_TAGS: Record<number, string> = {};
[
  'Debug', 'Error', 'CLI', 'SessOpen', 'SessClose', 'BackendOpen', 'BackendReuse', 'BackendClose', 'HttpGarbage',
  'Proxy', 'ProxyGarbage', 'Backend', 'Length', 'FetchError', 'ReqMethod', 'ReqURL', 'ReqProtocol', 'ReqStatus',
  'ReqReason', 'ReqHeader', 'ReqUnset', 'ReqLost', 'RespMethod', 'RespURL', 'RespProtocol', 'RespStatus',
  'RespReason', 'RespHeader', 'RespUnset', 'RespLost', 'BereqMethod', 'BereqURL', 'BereqProtocol', 'BereqStatus',
  'BereqReason', 'BereqHeader', 'BereqUnset', 'BereqLost', 'BerespMethod', 'BerespURL', 'BerespProtocol',
  'BerespStatus', 'BerespReason', 'BerespHeader', 'BerespUnset', 'BerespLost', 'ObjMethod', 'ObjURL', 'ObjProtocol',
  'ObjStatus', 'ObjReason', 'ObjHeader', 'ObjUnset', 'ObjLost', 'BogoHeader', 'LostHeader', 'TTL', 'Fetch_Body',
  'VCL_acl', 'VCL_call', 'VCL_trace', 'VCL_return', 'ReqStart', 'Hit', 'HitPass', 'ExpBan', 'ExpKill', 'WorkThread',
  'ESI_xmlerror', 'Hash', 'Backend_health', 'VCL_Log', 'VCL_Error', 'Gzip', 'Link', 'Begin', 'End', 'VSL', 'Storage',
  'Timestamp', 'ReqAcct', 'PipeAcct', 'BereqAcct', 'VfpAcct', 'Witness', 'H2RxHdr', 'H2RxBody', 'H2TxHdr', 'H2TxBody',
  '',
  'HitMiss', 'Filters', 'SessError', 'VCL_use', 'Notice', 'VdpAcct',
].forEach((tag, i) => {
  if (tag !== '') VSL_TAGS[i + 1] = tag;
});
