// Counts what a warm miss costs in event-loop work, independent of the machine's load (issue 16, miss first byte):
// async resources created (promises, nextTicks, Immediates, timers) and callbacks run between a miss's request bytes
// arriving at the proxy and its first write to the client, the same up to the origin request's write, and which
// socket call made the first client write (one writeBuffer = head and body in one synchronous write; writev = a
// corked head and body flushed on a nextTick). The proxy runs in this process (async_hooks), the origin
// (`sluice origin`) in its own; a raw kept-alive client asks for a new URL each time.
// With --times no async hook is installed (the counts are then left out) and the wall times of the two stretches a
// miss spends in the proxy are taken per miss: `inbound` from the client's request bytes to the origin request's
// write, `outbound` from the origin's response bytes (the origin socket's read) to the first client write; medians.
// A stretch is ~100-300 us of main-thread work with no system call inside, so a time slice taken by another process
// rarely falls in it: the medians hold up under load far better than a first-byte time does (compare targets run
// alternately in the same shell, e.g. --root /work/s8-base, not with figures taken at another load).
// Usage: node bench/miss-hops.mjs [--root CHECKOUT] [--path /static/1k] [--warm 1000] [--misses 200] [--times] [--gap MS] [--out FILE]
import async_hooks from 'node:async_hooks';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ROOT, machine, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const root = path.resolve(opt('--root', ROOT));
const PATH = opt('--path', '/static/1k');
const WARM = Number(opt('--warm', 1000));
const N = Number(opt('--misses', 200));
const out = opt('--out', undefined);
const TIMES = argv.includes('--times');
// --gap MS: MS of quiet before each measured miss (as miss-latency.mjs's idle pacing): the same stretches after the
// process slept, for the idle case's extra time (session 10).
const GAP = Number(opt('--gap', 0));

const originProc = await startSluice(['origin', '--listen', '127.0.0.1:0']);
const core = await import(path.join(root, 'packages/core/dist/index.js'));
const oc = await import(path.join(root, 'packages/origin-client/dist/index.js'));
const origin = oc.createOriginClient({ backends: [{ url: originProc.url }] });
const proxy = core.createProxy({ txlog: new core.TxLog([new core.LiveSink()], {}), upstream: origin });
const addr = await proxy.listen(0);

let armed = false;
let counting = false;
let t0 = 0n;
const inits = new Map();
const befores = new Map();
const types = new Map();
const marks = [];
let atBereq;
let atBeresp;
const originHandles = new WeakSet();
if (!TIMES) async_hooks
  .createHook({
    init(id, type) {
      types.set(id, type);
      if (counting) inits.set(type, (inits.get(type) ?? 0) + 1);
    },
    before(id) {
      if (!counting) return;
      const t = types.get(id);
      befores.set(t, (befores.get(t) ?? 0) + 1);
    },
    destroy(id) {
      types.delete(id);
    },
  })
  .enable();
const us = () => Number(process.hrtime.bigint() - t0) / 1000;
/** CPU time of the process, us (getrusage: precise for the running thread, the rest of the threads idle meanwhile). */
const cpu = () => {
  const c = process.cpuUsage();
  return c.user + c.system;
};
let cpu0 = 0;
const SERVER = Symbol('server side');
const client = net.connect(addr.port, '127.0.0.1');
// The origin request's write: the first write on a socket that is neither the client's nor an accepted one.
const socketWrite = net.Socket.prototype.write;
net.Socket.prototype.write = function (...a) {
  if (counting && atBereq === undefined && !this[SERVER] && this !== client) {
    atBereq = { promises: inits.get('PROMISE') ?? 0, us: us(), cpu: TIMES ? cpu() - cpu0 : 0 };
    // The origin's answer: the first read on this socket after the request (the handle's onread, before any parser).
    const h = this._handle;
    if (TIMES && h && !originHandles.has(h)) {
      originHandles.add(h);
      const onread = h.onread;
      h.onread = function (...r) {
        if (counting && atBereq !== undefined && atBeresp === undefined) atBeresp = { us: us(), cpu: cpu() - cpu0 };
        return onread.apply(this, r);
      };
    }
  }
  return socketWrite.apply(this, a);
};
const serverEmit = net.Server.prototype.emit;
net.Server.prototype.emit = function (ev, sock, ...rest) {
  if (ev === 'connection') {
    sock[SERVER] = true;
    const h = sock._handle;
    // The request's bytes arriving: the handle's read callback, before the server's reader (a 'data' listener would
    // never hear them when the server reads into its shared buffer, and would change how the socket is read).
    const onread = h.onread;
    h.onread = function (...r) {
      if (armed) {
        armed = false;
        counting = true;
        atBereq = undefined;
        atBeresp = undefined;
        inits.clear();
        befores.clear();
        t0 = process.hrtime.bigint();
        if (TIMES) cpu0 = cpu();
      }
      return onread.apply(this, r);
    };
    for (const m of ['writev', 'writeBuffer', 'writeLatin1String', 'writeUtf8String', 'writeAsciiString']) {
      const f = h[m];
      if (typeof f !== 'function') continue;
      h[m] = function (...a) {
        if (counting) {
          counting = false;
          marks.push({ us: us(), cpu: TIMES ? cpu() - cpu0 : 0, atBereq, atBeresp, inits: Object.fromEntries(inits), befores: Object.fromEntries(befores), firstWrite: m });
        }
        return f.apply(this, a);
      };
    }
  }
  return serverEmit.call(this, ev, sock, ...rest);
};
client.setNoDelay(true);
await new Promise((r) => client.once('connect', r));

function get(p) {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const on = (d) => {
      buf = Buffer.concat([buf, d]);
      const s = buf.toString('latin1');
      const end = s.indexOf('\r\n\r\n');
      if (end < 0) return;
      const m = /content-length: *(\d+)/i.exec(s.slice(0, end));
      if (m ? buf.length >= end + 4 + Number(m[1]) : s.endsWith('\r\n0\r\n\r\n')) {
        client.off('data', on);
        resolve();
      }
    };
    client.on('data', on);
    client.write(`GET ${p} HTTP/1.1\r\nHost: bench\r\n\r\n`);
  });
}
const sep = PATH.includes('?') ? '&' : '?';
for (let i = 0; i < WARM; i++) await get(`${PATH}${sep}w=${i}`);
for (let i = 0; i < N; i++) {
  if (GAP > 0) await new Promise((r) => setTimeout(r, GAP));
  armed = true;
  await get(`${PATH}${sep}m=${i}`);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const r1 = (x) => Math.round(x * 10) / 10;
const of = (f) => median(marks.map(f));
const result = {
  date: new Date().toISOString(),
  machine: machine(),
  root,
  path: PATH,
  warm: WARM,
  gapMs: GAP,
  misses: marks.length,
  ...(TIMES
    ? {
        timesUs: {
          inbound: r1(of((m) => m.atBereq?.us ?? NaN)),
          origin: r1(of((m) => (m.atBeresp?.us ?? NaN) - (m.atBereq?.us ?? NaN))),
          outbound: r1(of((m) => m.us - (m.atBeresp?.us ?? NaN))),
          total: r1(of((m) => m.us)),
        },
        // Process CPU time (getrusage) over the same stretches: what the proxy's thread worked, whatever the load.
        cpuUs: {
          inbound: r1(of((m) => m.atBereq?.cpu ?? NaN)),
          outbound: r1(of((m) => m.cpu - (m.atBeresp?.cpu ?? NaN))),
          meanInbound: r1(marks.reduce((a, m) => a + (m.atBereq?.cpu ?? 0), 0) / marks.length),
          meanOutbound: r1(marks.reduce((a, m) => a + m.cpu - (m.atBeresp?.cpu ?? 0), 0) / marks.length),
        },
        loadavg: os.loadavg(),
      }
    : {}),
  toFirstWrite: { promisesCreated: of((m) => m.inits.PROMISE ?? 0), promiseCallbacks: of((m) => m.befores.PROMISE ?? 0), nextTicksCreated: of((m) => m.inits.TickObject ?? 0), immediatesCreated: of((m) => m.inits.Immediate ?? 0), timersCreated: of((m) => m.inits.Timeout ?? 0) },
  toBereqWrite: { promisesCreated: of((m) => m.atBereq?.promises ?? 0) },
  firstWrite: marks.reduce((a, m) => ((a[m.firstWrite] = (a[m.firstWrite] ?? 0) + 1), a), {}),
  note: 'wall times under async_hooks are not figures; counts are',
};
console.log(JSON.stringify(result, null, 1));
if (out !== undefined) {
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
}
client.destroy();
await proxy.close();
await origin.destroy();
await stopAll();
process.exit(0);
