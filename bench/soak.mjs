// Soak test (issue 10). Usage: node bench/soak.mjs [--duration 3m] [--quick] [--clients 32] [--fault-rate 0.05]
//                                                [--storage 64MB] [--seed 1] [--out FILE]
// Mixed load through one Sluice process for a few minutes, every body checked byte for byte:
//   origin   a fault-injecting origin in this script (node:http): every body is AES-128-CTR keystream keyed by the
//            request target, so any slice of it can be computed again by the client; cacheable (/c/, max-age) and
//            uncacheable (/u/, private) objects, chunked and Content-Length framing, 1-8 MiB objects for ranges, and
//            at --fault-rate: reset mid-body, Content-Length longer than the body then close, slow trickle, 503,
//            delay before the headers
//   proxy    `sluice proxy --storage 64MB` in its own process, so the store fills and evicts
//   clients  --clients virtual clients: hits on a hot set, misses on a cold set, large objects, single and multiple
//            Ranges, If-None-Match, uncacheable GETs, POST pass (request bodies checked by the origin), raw-socket
//            clients that abort mid-body, slow readers, HEAD
// A response cut short is a "cut"; a byte that differs from the pattern, or a body that ends cleanly at the wrong
// length, is CORRUPTED (must be 0). The proxy's RSS is sampled every 5 s. Writes bench/results/<date>-soak.json;
// exits 1 when anything was corrupted or the proxy died.
import { spawn } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { Agent, request } from 'undici';
import { ROOT, machine, percentiles, sleep } from './lib.mjs';

// ---------------------------------------------------------------------------------------------------- settings

const argv = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : dflt;
};
const parseDuration = (s) => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(String(s));
  if (!m) throw new Error(`bad duration ${s}`);
  return Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000);
};
const quick = argv.includes('--quick');
const DURATION_MS = parseDuration(flag('--duration', quick ? '20s' : '3m'));
const CLIENTS = Number(flag('--clients', quick ? 16 : 32));
const FAULT_RATE = Number(flag('--fault-rate', 0.05));
const STORAGE = flag('--storage', '64MB');
const SEED = Number(flag('--seed', 1));
const SAMPLE_MS = parseDuration(flag('--sample', quick ? '2s' : '5s'));
const REQUEST_TIMEOUT_MS = 30_000; // a whole exchange
const IDLE_TIMEOUT_MS = 20_000; // undici's headers and body (between bytes) timeouts
const DRAIN_MS = 5_000;
const date = new Date().toISOString().slice(0, 10);
const out = flag('--out', path.join(ROOT, 'bench/results', `${date}-soak.json`));
const KiB = 1024;
const MiB = 1024 * 1024;

/** Share of each kind of client request (weights, not percentages). */
const WEIGHTS = {
  hit: 30, // GET on the hot set (cacheable, max-age=15: mostly hits, some grace refetches)
  miss: 12, // GET on a cold object never asked before (cacheable; fills the store)
  large: 4, // whole GET of a 1-8 MiB object
  range: 12, // one Range (closed, open-ended or suffix) on a large or hot object
  multirange: 5, // 2-4 Ranges: multipart/byteranges
  cond: 8, // If-None-Match on a hot object: its ETag (304) or a stale one (200)
  uncacheable: 6, // GET on a Cache-Control: private object
  post: 6, // POST with a body: pass
  abort: 5, // raw socket that closes after part of the body (or before any)
  slow: 4, // reader that pauses, then reads slowly
  head: 5, // HEAD on a hot or large object
};
const HOT = 48; // 512 B - 256 KiB
const LARGE = quick ? 8 : 16; // 1 - 8 MiB (~4.5 MiB each: the large set alone is about the store's size)
const UNCACHEABLE = 32;

// ---------------------------------------------------------------------------------------------------- the pattern

/** Seeded PRNG (mulberry32). */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = prng(SEED);
const randInt = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1)); // inclusive
const logUniform = (lo, hi) => Math.round(lo * (hi / lo) ** rand());
const pick = (xs) => xs[Math.floor(rand() * xs.length)];

const keys = new Map();
/** The pattern's key for a request target (path and query, as the origin sees it). */
function keyOf(target) {
  let k = keys.get(target);
  if (k === undefined) {
    k = createHash('sha256').update(target).digest().subarray(0, 16);
    if (keys.size > 50_000) keys.clear();
    keys.set(target, k);
  }
  return k;
}
const etagOf = (key) => `"${key.toString('hex').slice(0, 16)}"`;
const ZEROS = Buffer.alloc(MiB + 16);

/** Bytes [start, start + len) of the pattern for `key`: AES-128-CTR keystream, so any offset costs the same. */
function pattern(key, start, len) {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(Math.floor(start / 16)), 8);
  const skip = start % 16;
  const c = createCipheriv('aes-128-ctr', key, iv);
  const zeros = skip + len <= ZEROS.length ? ZEROS.subarray(0, skip + len) : Buffer.alloc(skip + len);
  return c.update(zeros).subarray(skip);
}

function firstDiff(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

// ---------------------------------------------------------------------------------------------------- the origin

const FAULTS = ['reset', 'short-cl', 'trickle', '503', 'delay'];
const originStats = {
  requests: 0,
  byMethod: {},
  faults: Object.fromEntries(FAULTS.map((f) => [f, 0])),
  notModified: 0,
  partial: 0,
  bodyBytesSent: 0,
  requestBodiesChecked: 0,
  requestBodiesCorrupted: 0,
  requestBodiesShort: 0,
  requestBodyCorruptSamples: [],
};
const originRand = prng(SEED ^ 0x5eed);
/**
 * Lengths the origin announced falsely (short-cl), by target. A proxy streaming such an object before its end takes
 * the origin's word for its length (Content-Length, a Range's complete length): told apart from inconsistencies of
 * the proxy's own, and the body then ends cut.
 */
const originLies = new Map();
function noteLie(target, length) {
  if (!originLies.has(target)) originLies.set(target, new Set());
  originLies.get(target).add(length);
}
const isLie = (target, length) => originLies.get(target)?.has(length) === true;

/**
 * Targets: /c/<size>/<name>?v=..&ttl=N (Cache-Control: max-age=N), /u/<size>/<name>?v=.. (private). The body is
 * pattern(keyOf(target), 0, size); framing (chunked or Content-Length) is a function of the key. A POST's request
 * body must be pattern(keyOf('req:' + target)). Honours If-None-Match and one Range.
 */
async function originHandle(req, res) {
  originStats.requests++;
  originStats.byMethod[req.method] = (originStats.byMethod[req.method] ?? 0) + 1;
  let closed = false;
  res.on('close', () => (closed = true));
  const u = new URL(req.url, 'http://origin');
  const m = /^\/([cu])\/(\d+)\/([\w.-]+)$/.exec(u.pathname);
  if (m === null) {
    req.resume();
    res.writeHead(404, { 'content-length': 0 });
    return res.end();
  }
  const size = Number(m[2]);
  const key = keyOf(req.url);
  const etag = etagOf(key);
  if (req.method === 'POST') await checkRequestBody(req);
  else req.resume();
  if (closed) return;

  const fault = req.method !== 'HEAD' && originRand() < FAULT_RATE ? FAULTS[Math.floor(originRand() * FAULTS.length)] : undefined;
  if (fault !== undefined) originStats.faults[fault]++;
  if (fault === '503') {
    res.writeHead(503, { 'content-type': 'text/plain', 'content-length': 13 });
    return res.end('injected 503\n');
  }
  if (fault === 'delay') {
    await sleep(300 + originRand() * 2700);
    if (closed) return;
  }
  const headers = {
    'content-type': 'application/octet-stream',
    etag,
    'cache-control': m[1] === 'c' ? `max-age=${u.searchParams.get('ttl') ?? 300}` : 'private',
    'accept-ranges': 'bytes',
  };
  const inm = req.headers['if-none-match'];
  if ((req.method === 'GET' || req.method === 'HEAD') && inm !== undefined && inm.split(/\s*,\s*/).includes(etag)) {
    originStats.notModified++;
    res.writeHead(304, { etag, 'cache-control': headers['cache-control'] });
    return res.end();
  }
  let start = 0;
  let len = size;
  let status = 200;
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers['range'] ?? '');
  if (req.method === 'GET' && range !== null && Number(range[1]) < size) {
    start = Number(range[1]);
    const end = range[2] === '' ? size - 1 : Math.min(size - 1, Number(range[2]));
    if (end >= start) {
      status = 206;
      len = end - start + 1;
      headers['content-range'] = `bytes ${start}-${end}/${size}`;
      originStats.partial++;
    }
  }
  const chunked = (key[0] & 1) === 1 && fault !== 'short-cl';
  if (!chunked) headers['content-length'] = fault === 'short-cl' ? len + 1 + Math.floor(originRand() * 4096) : len;
  if (fault === 'short-cl') noteLie(req.url, headers['content-length']); // of the whole object, or of the 206's part
  res.writeHead(status, headers);
  if (req.method === 'HEAD') return res.end();
  res.flushHeaders();

  const cutAt = fault === 'reset' ? Math.floor(originRand() * len) : len;
  const pieces = fault === 'trickle' ? 8 + Math.floor(originRand() * 12) : 0;
  const step = pieces > 0 ? Math.max(1, Math.ceil(len / pieces)) : 64 * KiB;
  let off = 0;
  while (off < cutAt && !closed) {
    const n = Math.min(step, cutAt - off, 256 * KiB);
    const ok = res.write(pattern(key, start + off, n));
    off += n;
    originStats.bodyBytesSent += n;
    if (pieces > 0) await sleep(100 + originRand() * 150);
    else if (!ok) {
      await new Promise((resolve) => {
        const go = () => (res.off('drain', go), res.off('close', go), resolve());
        res.on('drain', go);
        res.on('close', go);
      });
    }
  }
  if (closed) return;
  if (fault === 'reset') {
    setImmediate(() => res.socket?.destroy());
  } else if (fault === 'short-cl') {
    // Content-Length promised more than was sent: close the connection with the body short.
    res.socket?.end();
  } else {
    res.end();
  }
}

async function checkRequestBody(req) {
  const key = keyOf(`req:${req.url}`);
  const expected = Number(req.headers['content-length'] ?? -1);
  let off = 0;
  let bad = -1;
  try {
    for await (const c of req) {
      if (bad < 0) {
        const exp = pattern(key, off, c.length);
        if (!exp.equals(c)) bad = off + firstDiff(exp, c);
      }
      off += c.length;
    }
  } catch {
    // the proxy dropped the request: short
  }
  originStats.requestBodiesChecked++;
  if (bad >= 0 || (expected >= 0 && off > expected)) {
    originStats.requestBodiesCorrupted++;
    if (originStats.requestBodyCorruptSamples.length < 10) originStats.requestBodyCorruptSamples.push({ target: req.url, firstBadByte: bad, got: off, contentLength: expected });
  } else if (expected >= 0 && off < expected) {
    originStats.requestBodiesShort++;
  }
}

function startOrigin() {
  const server = http.createServer((req, res) => {
    originHandle(req, res).catch(() => res.destroy());
  });
  // The proxy keeps origin connections alive: never close one under it.
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// ---------------------------------------------------------------------------------------------------- the proxy

let proxyChild;
let proxyExit; // { code, signal, stderrTail } once it has exited
let stoppingProxy = false;
let stderrTail = '';

function startProxy(originUrl, adminToken) {
  const args = [path.join(ROOT, 'packages/cli/bin/run.js'), 'proxy', '--backend', originUrl, '--listen', '127.0.0.1:0', '--quiet', '--storage', STORAGE, '--admin-listen', '127.0.0.1:0'];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SLUICE_ADMIN_TOKEN: adminToken } });
    proxyChild = p;
    let stdout = '';
    p.stdout.on('data', (d) => {
      stdout += String(d);
      const l = /listening on (http:\/\/[\d.]+:\d+)/.exec(stdout);
      const a = /admin API on (http:\/\/[\d.]+:\d+)/.exec(stdout);
      if (l && a) resolve({ url: l[1], adminUrl: a[1], pid: p.pid, args: args.slice(1) });
    });
    p.stderr.on('data', (d) => (stderrTail = (stderrTail + String(d)).slice(-8192)));
    p.on('exit', (code, signal) => {
      proxyExit = { code, signal, expected: stoppingProxy, stderrTail };
      reject(new Error(`proxy exited ${code ?? signal}: ${stderrTail.trim()}`));
    });
  });
}

function stopProxy() {
  const p = proxyChild;
  if (p === undefined || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  stoppingProxy = true;
  return new Promise((resolve) => {
    const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
    p.once('exit', () => (clearTimeout(t), resolve()));
    p.kill('SIGTERM');
  });
}
process.on('exit', () => {
  if (proxyChild && proxyChild.exitCode === null && proxyChild.signalCode === null) proxyChild.kill('SIGKILL');
});

function rssMiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : NaN;
  } catch {
    return NaN;
  }
}

/** CPU seconds (user + system) a process has used (Linux /proc; clock ticks of 10 ms). */
function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

// ---------------------------------------------------------------------------------------------------- bookkeeping

const kinds = Object.fromEntries(Object.keys(WEIGHTS).map((k) => [k, { n: 0, outcomes: {}, statuses: {}, cacheStatus: {}, ms: [] }]));
const totals = { requests: 0, bodiesVerified: 0, bytesVerified: 0, corrupted: 0, inconsistent: 0, originLiesPassedOn: 0 };
const corruptedSamples = [];
const errorSamples = []; // errors before the response head (reset, timeout, ...)
const inconsistentSamples = [];
const inc = (o, k, n = 1) => (o[k] = (o[k] ?? 0) + n);

function record(kind, outcome, status, ms, cacheStatus) {
  const k = kinds[kind];
  k.n++;
  totals.requests++;
  inc(k.outcomes, outcome);
  if (status !== undefined) inc(k.statuses, String(status));
  if (cacheStatus !== undefined) inc(k.cacheStatus, cacheStatus);
  if (outcome === 'ok') k.ms.push(ms);
}
function corrupted(kind, detail) {
  totals.corrupted++;
  if (corruptedSamples.length < 20) corruptedSamples.push({ kind, at: Math.round((performance.now() - t0) / 100) / 10, ...detail });
}
/** A length that is not the object's: the origin's lie passed on (counted apart), or an inconsistency. */
function lieOrInconsistent(kind, target, length, reason, headers, extra = {}) {
  if (isLie(target, length)) totals.originLiesPassedOn++;
  else inconsistent(kind, { reason, target, headers: pickHeaders(headers), ...extra });
}
function inconsistent(kind, detail) {
  totals.inconsistent++;
  if (inconsistentSamples.length < 20) inconsistentSamples.push({ kind, ...detail });
}
/** `Sluice; hit` → hit, `Sluice; fwd=miss; stored` → fwd=miss. */
function cacheStatusOf(h) {
  const v = h['cache-status'];
  if (typeof v !== 'string') return undefined;
  return v.split(';')[1]?.trim() ?? 'none';
}

// ---------------------------------------------------------------------------------------------------- targets

const hotSet = Array.from({ length: HOT }, (_, i) => `/c/${logUniform(512, 256 * KiB)}/hot${i}?v=1&ttl=15`);
const largeSet = Array.from({ length: LARGE }, (_, i) => `/c/${randInt(MiB, 8 * MiB)}/large${i}?v=1&ttl=60`);
const uncacheableSet = Array.from({ length: UNCACHEABLE }, (_, i) => `/u/${logUniform(256, 512 * KiB)}/priv${i}?v=1`);
const RUN = randomBytes(4).toString('hex');
let coldCounter = 0;
const coldTarget = (lo = KiB, hi = 2 * MiB) => `/c/${logUniform(lo, hi)}/cold${coldCounter++}?v=${RUN}&ttl=300`;
const sizeOf = (target) => Number(/^\/[cu]\/(\d+)\//.exec(target)[1]);

// ---------------------------------------------------------------------------------------------------- clients

let PROXY; // { url, host, port }
const agent = new Agent({ keepAliveTimeout: 2000, keepAliveMaxTimeout: 2000, headersTimeout: IDLE_TIMEOUT_MS, bodyTimeout: IDLE_TIMEOUT_MS });
const inflight = new Set(); // AbortControllers and raw sockets, stopped at the end
const STOP = new Error('soak stopped');
const TIMEOUT = new Error('soak request timeout');
let stopping = false;
const t0 = performance.now();

/** Reads a body, comparing every chunk to pattern(key, start + offset); `pace` (ms per chunk) makes a slow reader. */
async function readChecked(body, key, start, pace) {
  let got = 0;
  let badAt = -1;
  try {
    for await (const c of body) {
      if (badAt < 0) {
        const exp = pattern(key, start + got, c.length);
        if (!exp.equals(c)) badAt = got + firstDiff(exp, c);
      }
      got += c.length;
      if (pace) await sleep(pace);
    }
    return { clean: true, got, badAt };
  } catch (error) {
    return { clean: false, got, badAt, error };
  }
}

function errorOutcome(e, ctl, kind, target) {
  if (ctl?.signal.aborted) return ctl.signal.reason === STOP ? 'stopped' : 'timeout';
  const code = e?.code ?? e?.cause?.code ?? e?.name;
  if (kind !== undefined && errorSamples.length < 20) errorSamples.push({ kind, target, code, message: e?.message, at: Math.round((performance.now() - t0) / 100) / 10 });
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return 'timeout';
  if (code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_CLOSED') return 'reset';
  return `error:${code ?? e?.message}`;
}

/**
 * Checks a body read against what it should be: `expectedLen` bytes of pattern(key) from `start`. Returns the
 * outcome: ok, cut (ended early, every byte right), or corrupted.
 */
function judge(kind, target, res, r, key, start, expectedLen, extra = {}) {
  const detail = () => ({ target, status: res.statusCode, headers: pickHeaders(res.headers), start, expectedLen, got: r.got, firstBadByte: r.badAt, error: r.error?.code ?? r.error?.message, ...extra });
  if (r.badAt >= 0) {
    corrupted(kind, { reason: 'bytes', ...detail() });
    return 'corrupted';
  }
  if (r.got > expectedLen) {
    corrupted(kind, { reason: 'too-long', ...detail() });
    return 'corrupted';
  }
  if (!r.clean) return r.error === undefined ? 'cut' : errorOutcome(r.error, extra.ctl) === 'reset' ? 'cut' : errorOutcome(r.error, extra.ctl);
  if (r.got !== expectedLen) {
    // A body that ended cleanly with fewer bytes than the object has: an incomplete object served as complete.
    corrupted(kind, { reason: 'short-clean-end', ...detail() });
    return 'corrupted';
  }
  totals.bodiesVerified++;
  totals.bytesVerified += r.got;
  return 'ok';
}
const pickHeaders = (h) => Object.fromEntries(['content-length', 'content-range', 'content-type', 'transfer-encoding', 'etag', 'cache-status', 'age'].filter((k) => h[k] !== undefined).map((k) => [k, h[k]]));

/** One request through undici with a timeout, registered so the end of the run can stop it. */
async function withController(fn) {
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(TIMEOUT), REQUEST_TIMEOUT_MS);
  inflight.add(ctl);
  try {
    return await fn(ctl);
  } finally {
    clearTimeout(t);
    inflight.delete(ctl);
  }
}

/** GET/HEAD/POST of `target`, body checked as a whole object (200) or as one range (206). */
async function fetchChecked(kind, target, { method = 'GET', headers = {}, body, expectRange, pace, pauseMs } = {}) {
  const started = performance.now();
  await withController(async (ctl) => {
    let res;
    try {
      res = await request(`${PROXY.url}${target}`, { method, headers, body, dispatcher: agent, signal: ctl.signal });
    } catch (e) {
      return record(kind, errorOutcome(e, ctl, kind, target), undefined, 0);
    }
    const size = sizeOf(target);
    const key = keyOf(target);
    const cs = cacheStatusOf(res.headers);
    const status = res.statusCode;
    if (pauseMs) await sleep(pauseMs);
    let outcome;
    if (method === 'HEAD') {
      const r = await readChecked(res.body, key, 0);
      if (status === 200 && res.headers['content-length'] !== undefined && Number(res.headers['content-length']) !== size) lieOrInconsistent(kind, target, Number(res.headers['content-length']), 'head-content-length', res.headers);
      if (r.got > 0) corrupted(kind, { reason: 'head-with-body', target, got: r.got });
      outcome = r.got > 0 ? 'corrupted' : status === 200 ? 'ok' : statusOutcome(status);
    } else if (status === 304) {
      await res.body.dump().catch(() => {});
      if (res.headers['etag'] !== etagOf(key)) inconsistent(kind, { reason: '304-etag', target, headers: pickHeaders(res.headers) });
      outcome = headers['if-none-match'] === etagOf(key) ? 'ok' : 'unexpected-304';
    } else if (status === 200) {
      const cl = res.headers['content-length'];
      if (cl !== undefined && Number(cl) !== size) lieOrInconsistent(kind, target, Number(cl), '200-content-length', res.headers);
      if (res.headers['etag'] !== undefined && res.headers['etag'] !== etagOf(key)) inconsistent(kind, { reason: '200-etag', target, headers: pickHeaders(res.headers) });
      const r = await readChecked(res.body, key, 0, pace);
      outcome = judge(kind, target, res, r, key, 0, size, { ctl });
    } else if (status === 206 && expectRange !== undefined) {
      outcome = await check206(kind, target, res, key, size, expectRange, headers.range, pace, ctl);
    } else {
      await res.body.dump().catch(() => {});
      outcome = statusOutcome(status);
    }
    record(kind, outcome, status, performance.now() - started, cs);
  });
}
const statusOutcome = (status) => (status >= 500 ? `http-${status}` : `status-${status}`);

/** One `bytes=` spec resolved against a complete length: [first, last]. */
function resolveOne(header, total) {
  const [, a, b] = /^bytes=(\d*)-(\d*)$/.exec(header);
  if (a === '') return [Math.max(0, total - Number(b)), total - 1];
  return [Number(a), b === '' ? total - 1 : Math.min(total - 1, Number(b))];
}

async function check206(kind, target, res, key, size, want, header, pace, ctl) {
  const ct = String(res.headers['content-type'] ?? '');
  if (ct.startsWith('multipart/byteranges')) return checkMultipart(kind, target, res, key, size, want, ctl);
  const cr = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
  if (cr === null) {
    await res.body.dump().catch(() => {});
    inconsistent(kind, { reason: 'content-range', target, headers: pickHeaders(res.headers) });
    return 'inconsistent';
  }
  const a = Number(cr[1]);
  const b = Math.min(Number(cr[2]), size - 1); // `bytes a-<open end>/*` while the length is unknown
  // The complete length, and the last byte as the proxy announced it (it may be past the object's real end when the
  // origin lied about the length; the body then ends cut).
  const total = cr[3] === '*' ? undefined : Number(cr[3]);
  const lied = total !== undefined && total !== size && isLie(target, total);
  if (lied) totals.originLiesPassedOn++;
  const announcedLast = cr[3] === '*' ? b : Number(cr[2]);
  const [wantFirst, wantLast] = lied ? resolveOne(header, total) : want[0];
  if ((total !== undefined && total !== size && !lied) || want.length !== 1 || a !== wantFirst || announcedLast !== wantLast) {
    inconsistent(kind, { reason: 'range-answered', target, want, headers: pickHeaders(res.headers) });
  }
  const cl = res.headers['content-length'];
  if (cl !== undefined && Number(cl) !== announcedLast - a + 1) lieOrInconsistent(kind, target, Number(cl), '206-content-length', res.headers);
  const r = await readChecked(res.body, key, a, pace);
  // A range the origin's false length put past the object's real end has no bytes to give: it can only end cut.
  return judge(kind, target, res, r, key, a, Math.max(0, b - a + 1), { ctl, want });
}

/** multipart/byteranges: every part's bytes against the pattern at its Content-Range; a cut body checked as far as it goes. */
async function checkMultipart(kind, target, res, key, size, want, ctl) {
  const boundary = /boundary=("?)([^";]+)\1/.exec(String(res.headers['content-type']))?.[2];
  const chunks = [];
  let clean = true;
  let error;
  try {
    for await (const c of res.body) chunks.push(c);
  } catch (e) {
    clean = false;
    error = e;
  }
  const buf = Buffer.concat(chunks);
  const fail = (reason, extra = {}) => {
    corrupted(kind, { reason, target, want, status: 206, headers: pickHeaders(res.headers), got: buf.length, ...extra });
    return 'corrupted';
  };
  if (boundary === undefined) return fail('multipart-no-boundary');
  const delim = Buffer.from(`--${boundary}`, 'latin1');
  let pos = 0;
  const parts = [];
  let done = false;
  for (;;) {
    if (buf.subarray(pos, pos + 2).toString('latin1') === '\r\n') pos += 2;
    if (pos + delim.length + 2 > buf.length) break; // cut
    if (!buf.subarray(pos, pos + delim.length).equals(delim)) return fail('multipart-framing', { at: pos });
    pos += delim.length;
    const after = buf.subarray(pos, pos + 2).toString('latin1');
    if (after === '--') {
      done = true;
      break;
    }
    if (after !== '\r\n') return fail('multipart-framing', { at: pos });
    const headEnd = buf.indexOf('\r\n\r\n', pos, 'latin1');
    if (headEnd < 0) break; // cut
    const head = buf.subarray(pos, headEnd).toString('latin1');
    const cr = /content-range: bytes (\d+)-(\d+)\/(\d+)/i.exec(head);
    if (cr === null) return fail('multipart-content-range', { head });
    if (Number(cr[3]) !== size) lieOrInconsistent(kind, target, Number(cr[3]), 'multipart-complete-length', res.headers, { head });
    const a = Number(cr[1]);
    const b = Number(cr[2]);
    pos = headEnd + 4;
    const data = buf.subarray(pos, Math.min(buf.length, pos + b - a + 1));
    const exp = pattern(key, a, data.length);
    if (!exp.equals(data)) return fail('bytes', { part: [a, b], firstBadByte: a + firstDiff(exp, data) });
    parts.push([a, b]);
    pos += b - a + 1;
    if (pos > buf.length) break; // cut inside the part
  }
  if (!done) {
    if (clean) return fail('multipart-short-clean-end');
    return errorOutcome(error, ctl) === 'reset' ? 'cut' : errorOutcome(error, ctl);
  }
  // Parts may be coalesced, but together they must cover exactly what was asked.
  const covered = want.every(([a, b]) => parts.some(([pa, pb]) => pa <= a && pb >= b));
  const inside = parts.every(([pa, pb]) => pa >= want[0][0] && pb <= want[want.length - 1][1]);
  if (!covered || !inside) inconsistent(kind, { reason: 'multipart-parts', target, want, parts });
  totals.bodiesVerified++;
  totals.bytesVerified += buf.length;
  return 'ok';
}

/** A Range header for an object of `size` bytes and the [first, last] it resolves to. */
function oneRange(size) {
  const r = rand();
  if (r < 0.6 || size < 4) {
    const len = Math.min(size, logUniform(1, 256 * KiB));
    const a = randInt(0, size - len);
    return { header: `bytes=${a}-${a + len - 1}`, want: [[a, a + len - 1]] };
  }
  if (r < 0.8) {
    const a = randInt(Math.max(0, size - 512 * KiB), size - 1);
    return { header: `bytes=${a}-`, want: [[a, size - 1]] };
  }
  const n = Math.min(size, logUniform(1, 64 * KiB));
  return { header: `bytes=-${n}`, want: [[size - n, size - 1]] };
}
function multiRange(size) {
  const k = randInt(2, 4);
  const zone = Math.floor(size / k);
  const want = [];
  for (let i = 0; i < k; i++) {
    const len = Math.max(1, Math.min(64 * KiB, logUniform(1, Math.max(1, Math.floor(zone / 2)))));
    const a = i * zone + randInt(0, Math.max(0, Math.floor(zone / 2) - len));
    want.push([a, a + len - 1]);
  }
  return { header: `bytes=${want.map(([a, b]) => `${a}-${b}`).join(',')}`, want };
}

/** Raw socket: sends a GET, reads `readBytes` of the response (head included) then closes; 0 closes at once. */
function rawAbort(target, readBytes) {
  return new Promise((resolve) => {
    const s = net.connect(PROXY.port, PROXY.host);
    let got = 0;
    let done = false;
    const finish = (outcome) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      inflight.delete(s);
      s.destroy();
      resolve(outcome);
    };
    s.stopSoak = () => finish('stopped');
    inflight.add(s);
    const t = setTimeout(() => finish('timeout'), REQUEST_TIMEOUT_MS);
    s.on('connect', () => {
      s.write(`GET ${target} HTTP/1.1\r\nHost: soak\r\nUser-Agent: soak-abort\r\nConnection: close\r\n\r\n`);
      if (readBytes === 0) setTimeout(() => finish('aborted'), 2);
    });
    s.on('data', (d) => {
      got += d.length;
      if (got >= readBytes) finish('aborted');
    });
    s.on('end', () => finish(got > 0 ? 'ended-before-abort' : 'reset'));
    s.on('error', () => finish('reset'));
  });
}

async function oneRequest() {
  const total = Object.values(WEIGHTS).reduce((a, b) => a + b, 0);
  let x = rand() * total;
  let kind = 'hit';
  for (const [k, w] of Object.entries(WEIGHTS)) {
    if ((x -= w) < 0) {
      kind = k;
      break;
    }
  }
  switch (kind) {
    case 'hit':
      return fetchChecked(kind, pick(hotSet));
    case 'miss':
      return fetchChecked(kind, coldTarget());
    case 'large':
      return fetchChecked(kind, pick(largeSet));
    case 'range': {
      const target = rand() < 0.8 ? pick(largeSet) : pick(hotSet);
      const { header, want } = oneRange(sizeOf(target));
      return fetchChecked(kind, target, { headers: { range: header }, expectRange: want });
    }
    case 'multirange': {
      const target = rand() < 0.7 ? pick(largeSet) : pick(hotSet);
      const { header, want } = multiRange(sizeOf(target));
      return fetchChecked(kind, target, { headers: { range: header }, expectRange: want });
    }
    case 'cond': {
      const target = pick(hotSet);
      const inm = rand() < 0.7 ? etagOf(keyOf(target)) : '"stale-etag"';
      return fetchChecked(kind, target, { headers: { 'if-none-match': inm } });
    }
    case 'uncacheable':
      return fetchChecked(kind, pick(uncacheableSet));
    case 'post': {
      const target = rand() < 0.5 ? `/u/${logUniform(64, 256 * KiB)}/post${randInt(0, 63)}?v=1` : pick(hotSet);
      const body = pattern(keyOf(`req:${target}`), 0, logUniform(1, 64 * KiB));
      return fetchChecked(kind, target, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
    }
    case 'abort': {
      const target = rand() < 0.5 ? pick(largeSet) : coldTarget(256 * KiB, 4 * MiB);
      const readBytes = rand() < 0.25 ? 0 : logUniform(1, Math.floor(sizeOf(target) / 2));
      const started = performance.now();
      const outcome = await rawAbort(target, readBytes);
      return record(kind, outcome === 'aborted' || outcome === 'ended-before-abort' ? 'ok' : outcome, undefined, performance.now() - started);
    }
    case 'slow': {
      const target = rand() < 0.5 ? pick(largeSet) : coldTarget(256 * KiB, 2 * MiB);
      // Pause 0.5-3 s after the head, then about 16-64 KiB chunks every 5-20 ms (1-10 MB/s).
      return fetchChecked(kind, target, { pauseMs: 500 + rand() * 2500, pace: 5 + rand() * 15 });
    }
    case 'head':
      return fetchChecked(kind, rand() < 0.7 ? pick(hotSet) : pick(largeSet), { method: 'HEAD' });
  }
}

async function virtualClient(deadline) {
  while (!stopping && performance.now() < deadline && proxyExit === undefined) {
    try {
      await oneRequest();
    } catch (e) {
      // a bug in this script, not the proxy: say so and go on
      console.error(`soak: client error: ${e.stack}`);
      await sleep(100);
    }
  }
}

// ---------------------------------------------------------------------------------------------------- the run

async function adminStats(adminUrl, token) {
  try {
    const r = await request(`${adminUrl}/stats`, { headers: { authorization: `Bearer ${token}` }, headersTimeout: 3000, bodyTimeout: 3000 });
    return await r.body.json();
  } catch {
    return undefined;
  }
}

function slopeMiBPerMin(samples) {
  if (samples.length < 2) return NaN;
  const n = samples.length;
  const mx = samples.reduce((a, s) => a + s.t, 0) / n;
  const my = samples.reduce((a, s) => a + s.rssMiB, 0) / n;
  let num = 0;
  let den = 0;
  for (const s of samples) {
    num += (s.t - mx) * (s.rssMiB - my);
    den += (s.t - mx) ** 2;
  }
  return Math.round((num / den) * 60 * 100) / 100;
}

let origin;
async function cleanup() {
  stopping = true;
  for (const x of inflight) (x instanceof AbortController ? x.abort(STOP) : x.stopSoak());
  await stopProxy();
  await agent.close().catch(() => {});
  origin?.closeAllConnections();
  origin?.close();
}

async function main() {
  const m = machine();
  origin = await startOrigin();
  const originUrl = `http://127.0.0.1:${origin.address().port}`;
  const adminToken = randomBytes(18).toString('base64url');
  const proxy = await startProxy(originUrl, adminToken);
  const pu = new URL(proxy.url);
  PROXY = { url: proxy.url, host: pu.hostname, port: Number(pu.port) };
  console.log(`soak: ${DURATION_MS / 1000} s, ${CLIENTS} clients, fault rate ${FAULT_RATE}, storage ${STORAGE}; proxy pid ${proxy.pid} on ${proxy.url}, origin ${originUrl}`);

  const samples = [];
  const sample = async () => {
    const st = await adminStats(proxy.adminUrl, adminToken);
    const s = {
      t: Math.round((performance.now() - t0) / 1000),
      rssMiB: rssMiB(proxy.pid),
      storeMiB: st ? Math.round((st.storage.bytes / MiB) * 10) / 10 : null,
      objects: st?.storage.objects ?? null,
      lruNuked: st?.main?.n_lru_nuked ?? null,
      requests: totals.requests,
      corrupted: totals.corrupted,
    };
    if (proxyExit === undefined) samples.push(s);
    if (!quick || samples.length % 2 === 1) console.log(`  t=${String(s.t).padStart(4)} s  rss ${String(s.rssMiB).padStart(6)} MiB  store ${String(s.storeMiB).padStart(5)} MiB ${String(s.objects).padStart(5)} objects  evicted ${String(s.lruNuked).padStart(6)}  requests ${s.requests}  corrupted ${s.corrupted}`);
  };
  await sample();
  let sampling = Promise.resolve();
  const sampler = setInterval(() => (sampling = sample()), SAMPLE_MS);

  const proxyCpu0 = cpuSeconds(proxy.pid);
  const soakCpu0 = (process.cpuUsage().user + process.cpuUsage().system) / 1e6;
  const runStart = performance.now();
  const deadline = runStart + DURATION_MS;
  const clients = Array.from({ length: CLIENTS }, () => virtualClient(deadline));
  // Stop at the duration: let requests in flight finish for DRAIN_MS, then stop them.
  const stopTimer = setTimeout(() => {
    stopping = true;
    setTimeout(() => {
      for (const x of inflight) (x instanceof AbortController ? x.abort(STOP) : x.stopSoak());
    }, DRAIN_MS).unref();
  }, DURATION_MS);
  // A dead proxy ends the run at once.
  proxyChild.once('exit', () => {
    if (stoppingProxy) return;
    stopping = true;
    for (const x of inflight) (x instanceof AbortController ? x.abort(STOP) : x.stopSoak());
  });
  await Promise.all(clients);
  clearTimeout(stopTimer);
  clearInterval(sampler);
  await sampling;
  const elapsedS = (performance.now() - runStart) / 1000;
  if (proxyExit === undefined) await sample();
  const finalStats = proxyExit === undefined ? await adminStats(proxy.adminUrl, adminToken) : undefined;
  const cpu = { proxyS: Math.round(cpuSeconds(proxy.pid) - proxyCpu0), soakProcessS: Math.round((process.cpuUsage().user + process.cpuUsage().system) / 1e6 - soakCpu0) };
  const died = proxyExit !== undefined ? { ...proxyExit } : null;
  await cleanup();

  // ---- results
  const errors = {};
  const statuses = {};
  const byKind = {};
  for (const [name, k] of Object.entries(kinds)) {
    for (const [o, n] of Object.entries(k.outcomes)) if (o !== 'ok') inc(errors, o, n);
    for (const [s, n] of Object.entries(k.statuses)) inc(statuses, s, n);
    byKind[name] = { requests: k.n, outcomes: k.outcomes, statuses: k.statuses, cacheStatus: k.cacheStatus, okMs: percentiles(k.ms) };
  }
  const rssValues = samples.map((s) => s.rssMiB).filter((v) => !Number.isNaN(v));
  const half = samples.filter((s) => s.t >= samples[samples.length - 1].t / 2);
  const full = samples.find((s) => s.storeMiB !== null && finalStats && s.storeMiB * MiB >= 0.9 * finalStats.storage.maxBytes);
  const rss = {
    startMiB: rssValues[0],
    peakMiB: Math.max(...rssValues),
    endMiB: rssValues[rssValues.length - 1],
    slopeLastHalfMiBPerMin: slopeMiBPerMin(half),
    storeFullAtS: full?.t ?? null,
    samples,
  };
  const result = {
    date: new Date().toISOString(),
    quick,
    machine: m,
    settings: {
      durationS: DURATION_MS / 1000,
      clients: CLIENTS,
      faultRate: FAULT_RATE,
      faults: FAULTS,
      storage: STORAGE,
      seed: SEED,
      weights: WEIGHTS,
      hotObjects: HOT,
      largeObjects: LARGE,
      uncacheableObjects: UNCACHEABLE,
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
      headersAndBodyTimeoutMs: IDLE_TIMEOUT_MS,
      proxyArgs: proxy.args.slice(1),
    },
    results: {
      elapsedS: Math.round(elapsedS * 10) / 10,
      requests: totals.requests,
      requestsPerS: Math.round(totals.requests / elapsedS),
      bodiesVerified: totals.bodiesVerified,
      bytesVerifiedMiB: Math.round(totals.bytesVerified / MiB),
      corrupted: totals.corrupted,
      corruptedSamples,
      originLiesPassedOn: totals.originLiesPassedOn,
      inconsistent: totals.inconsistent,
      inconsistentSamples,
      errorSamples,
      errors,
      statuses,
      byKind,
      origin: { ...originStats, bodyMiBSent: Math.round(originStats.bodyBytesSent / MiB), bodyBytesSent: undefined },
      proxy: { died, finalStats: finalStats ? { main: finalStats.main, storage: finalStats.storage } : null },
      rss,
      cpu,
    },
  };
  const failed = totals.corrupted > 0 || died !== null || originStats.requestBodiesCorrupted > 0;
  result.ok = !failed;
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);

  // ---- summary
  const fmtCounts = (o) => Object.entries(o).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ') || '-';
  console.log(`\n${totals.requests} requests in ${result.results.elapsedS} s (${result.results.requestsPerS}/s); ${totals.bodiesVerified} bodies (${result.results.bytesVerifiedMiB} MiB) verified byte for byte`);
  console.log(`\n${'kind'.padEnd(12)} ${'requests'.padStart(8)}  ${'ok p50/p99 ms'.padEnd(16)} outcomes; statuses; cache-status`);
  for (const [name, k] of Object.entries(byKind)) {
    console.log(`${name.padEnd(12)} ${String(k.requests).padStart(8)}  ${`${k.okMs.p50}/${k.okMs.p99}`.padEnd(16)} ${fmtCounts(k.outcomes)}; ${fmtCounts(k.statuses)}; ${fmtCounts(k.cacheStatus)}`);
  }
  console.log(`\nstatuses:  ${fmtCounts(statuses)}`);
  console.log(`errors:    ${fmtCounts(errors)}`);
  console.log(`origin:    ${originStats.requests} requests, ${result.results.origin.bodyMiBSent} MiB; faults ${fmtCounts(originStats.faults)}; request bodies checked ${originStats.requestBodiesChecked}, corrupted ${originStats.requestBodiesCorrupted}, short ${originStats.requestBodiesShort}`);
  if (finalStats) console.log(`store:     ${Math.round(finalStats.storage.bytes / MiB)} of ${Math.round(finalStats.storage.maxBytes / MiB)} MiB, ${finalStats.storage.objects} objects, ${finalStats.main.n_lru_nuked} evicted`);
  console.log(`cpu:       proxy ${cpu.proxyS} s, this process (origin + clients) ${cpu.soakProcessS} s over ${result.results.elapsedS} s`);
  console.log(`\nRSS (MiB): start ${rss.startMiB}, peak ${rss.peakMiB}, end ${rss.endMiB}; slope over the last half ${rss.slopeLastHalfMiBPerMin} MiB/min; store full at ${rss.storeFullAtS ?? '-'} s`);
  const step = Math.max(1, Math.ceil(samples.length / 12));
  console.log(`  ${'t s'.padStart(5)} ${'rss'.padStart(7)} ${'store'.padStart(6)} ${'evicted'.padStart(8)} ${'requests'.padStart(9)}`);
  samples.forEach((s, i) => {
    if (i % step === 0 || i === samples.length - 1) console.log(`  ${String(s.t).padStart(5)} ${String(s.rssMiB).padStart(7)} ${String(s.storeMiB).padStart(6)} ${String(s.lruNuked).padStart(8)} ${String(s.requests).padStart(9)}`);
  });
  console.log(`\nCORRUPTED: ${totals.corrupted}   inconsistent: ${totals.inconsistent} (the origin's false lengths passed on while streaming: ${totals.originLiesPassedOn})   proxy died: ${died ? `yes (${died.code ?? died.signal})` : 'no'}`);
  for (const c of corruptedSamples.slice(0, 5)) console.log(`  corrupted: ${JSON.stringify(c)}`);
  for (const c of inconsistentSamples.slice(0, 5)) console.log(`  inconsistent: ${JSON.stringify(c)}`);
  if (died) console.log(`  proxy stderr: ${died.stderrTail.trim().slice(-2000)}`);
  console.log(`\nwritten ${path.relative(ROOT, out)}`);
  process.exitCode = failed ? 1 : 0;
}

process.once('SIGINT', () => {
  console.error('soak: interrupted');
  cleanup().finally(() => process.exit(130));
});

main().catch(async (e) => {
  console.error(`soak failed: ${e.stack ?? e.message}`);
  await cleanup();
  process.exit(1);
});
