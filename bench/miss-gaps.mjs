// Where a warm miss's first-byte time goes inside the proxy, from the proxy's own system calls (issue 16, miss first
// byte). Each proxy (this checkout, and --base DIR in the same run) first serves W misses (JIT warm); then strace
// (-f -ttt) is attached and R misses follow on a raw kept-alive connection, a new URL each, `--gap` ms apart (0 = back
// to back). Per miss, from the trace:
//   inbound   the client's request read -> the origin request's write (recv, lookup, bereq, origin client dispatch)
//   outbound  the origin's response read -> the first write to the client (beresp, commit, delivery head)
//   syscalls  system calls the main thread made per miss, and event-loop waits (epoll_wait calls) per miss
// Medians over the misses. strace stops the process at every system call, so the gaps carry a fixed cost of a few
// stops each (the same for both targets); compare targets in the same run, not with wall-clock figures elsewhere.
// Usage: node bench/miss-gaps.mjs [--base DIR] [--path /static/1k] [--warm 2000] [--misses 200] [--gap 30]
//                                 [--rounds 2] [--out FILE]
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ROOT, machine, sleep, startSluice, stopAll } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const BASE = opt('--base', undefined);
const PATH = opt('--path', '/static/1k');
const WARM = Number(opt('--warm', 2000));
const N = Number(opt('--misses', 200));
const GAP = Number(opt('--gap', 30));
const ROUNDS = Number(opt('--rounds', 2));
const out = opt('--out', path.join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 10)}-miss-gaps.json`));

function connect(url) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname, () => resolve(s));
    s.setNoDelay(true);
    s.once('error', reject);
  });
}

let seq = 0;
function miss(s, tag) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const m = /content-length: *(\d+)/i.exec(head);
      const done = m !== null ? buf.length >= end + 4 + Number(m[1]) : buf.subarray(buf.length - 5).toString('latin1') === '0\r\n\r\n';
      if (!done) return;
      s.off('data', onData);
      if (!head.startsWith('HTTP/1.1 200')) reject(new Error(`${tag}: ${head.split('\r\n')[0]}`));
      else resolve();
    };
    s.on('data', onData);
    s.write(`GET ${PATH}${PATH.includes('?') ? '&' : '?'}mg=${tag}-${process.pid}-${seq++} HTTP/1.1\r\nHost: bench\r\n\r\n`);
  });
}

const median = (xs) => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]);
const r1 = (x) => Math.round(x * 10) / 10;

/**
 * Splits a strace -f -ttt log into misses: a miss starts at a read of the client's `GET ... mg=` bytes. The origin
 * request is the write of those bytes to another descriptor; the origin's answer is the next read of `HTTP/1.1` on
 * that descriptor; the client's first byte is the next write/writev on the client descriptor.
 */
function analyse(text) {
  const rows = [];
  let cur;
  for (const line of text.split('\n')) {
    const m = /^(\d+)\s+(\d+\.\d+)\s+(\w+)\((\d+)?,?\s*(.*)$/.exec(line);
    if (m === null) continue;
    const [, tid, ts, call, fdText, rest] = m;
    const t = Number(ts) * 1e6;
    const fd = fdText === undefined ? -1 : Number(fdText);
    if (call === 'read' && rest.startsWith('"GET ') && rest.includes('mg=')) {
      if (cur !== undefined) rows.push(cur);
      cur = { main: tid, clientFd: fd, tRead: t, calls: {}, epollWaits: 0 };
      continue;
    }
    if (cur === undefined || tid !== cur.main) continue;
    cur.calls[call] = (cur.calls[call] ?? 0) + 1;
    if (call.startsWith('epoll_')) cur.epollWaits++;
    if (cur.tBereq === undefined && (call === 'write' || call === 'writev') && fd !== cur.clientFd && rest.includes('GET ')) {
      cur.tBereq = t;
      cur.originFd = fd;
    } else if (cur.tBereq !== undefined && cur.tBeresp === undefined && call === 'read' && fd === cur.originFd && rest.startsWith('"HTTP/1.1')) {
      cur.tBeresp = t;
    } else if (cur.tBeresp !== undefined && cur.tResp === undefined && (call === 'write' || call === 'writev') && fd === cur.clientFd) {
      cur.tResp = t;
    }
  }
  if (cur !== undefined) rows.push(cur);
  const ok = rows.filter((r) => r.tResp !== undefined);
  const names = new Set(ok.flatMap((r) => Object.keys(r.calls)));
  const callsPerMiss = Object.fromEntries([...names].sort().map((n) => [n, r1(ok.reduce((a, r) => a + (r.calls[n] ?? 0), 0) / ok.length)]));
  return {
    misses: ok.length,
    inboundUs: r1(median(ok.map((r) => r.tBereq - r.tRead))),
    outboundUs: r1(median(ok.map((r) => r.tResp - r.tBeresp))),
    originUs: r1(median(ok.map((r) => r.tBeresp - r.tBereq))),
    epollWaitsPerMiss: r1(ok.reduce((a, r) => a + r.epollWaits, 0) / ok.length),
    syscallsPerMiss: r1(ok.reduce((a, r) => a + Object.values(r.calls).reduce((x, y) => x + y, 0), 0) / ok.length),
    callsPerMiss,
  };
}

async function main() {
  const m = machine();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sluice-miss-gaps-'));
  const origin = await startSluice(['origin', '--listen', '127.0.0.1:0']);
  const targets = [{ name: 'sluice', root: ROOT }];
  if (BASE !== undefined) targets.push({ name: 'base', root: path.resolve(BASE) });
  for (const t of targets) Object.assign(t, await startSluice(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet'], t.root));
  console.log(`miss-gaps of ${PATH}, gap ${GAP} ms, on ${m.cores} cores, node ${m.node}, load ${m.loadavgAtStart.join(' ')}: ${targets.map((t) => t.name).join(', ')}`);
  for (const t of targets) {
    const s = await connect(t.url);
    for (let i = 0; i < WARM; i++) await miss(s, `w${t.name}`);
    s.destroy();
  }
  const result = { date: new Date().toISOString(), machine: m, path: PATH, warm: WARM, misses: N, gapMs: GAP, base: BASE, targets: {} };
  for (const t of targets) result.targets[t.name] = { root: t.root, rounds: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const t of r % 2 === 0 ? targets : [...targets].reverse()) {
      const file = path.join(tmp, `${t.name}-${r}.txt`);
      const st = spawn('strace', ['-f', '-ttt', '-s', '24', '-p', String(t.pid), '-o', file], { stdio: 'ignore' });
      await sleep(1000);
      const s = await connect(t.url);
      const load = os.loadavg()[0];
      for (let i = 0; i < N; i++) {
        await miss(s, `m${t.name}`);
        if (GAP > 0) await sleep(GAP);
      }
      s.destroy();
      st.kill('SIGINT');
      await new Promise((res) => st.once('exit', res));
      const a = { loadavg: load, ...analyse(readFileSync(file, 'utf8')) };
      result.targets[t.name].rounds.push(a);
      console.log(`round ${r} ${t.name}: inbound ${a.inboundUs} us, outbound ${a.outboundUs} us, origin ${a.originUs} us, syscalls/miss ${a.syscallsPerMiss} (epoll ${a.epollWaitsPerMiss}) ${JSON.stringify(a.callsPerMiss)} (${a.misses} misses, load ${load.toFixed(2)})`);
    }
  }
  for (const t of targets) {
    const rs = result.targets[t.name].rounds;
    const summary = { inboundUs: median(rs.map((x) => x.inboundUs)), outboundUs: median(rs.map((x) => x.outboundUs)), syscallsPerMiss: median(rs.map((x) => x.syscallsPerMiss)), epollWaitsPerMiss: median(rs.map((x) => x.epollWaitsPerMiss)) };
    Object.assign(result.targets[t.name], summary);
    console.log(`${t.name}: ${JSON.stringify(summary)}`);
  }
  result.loadavgAtEnd = os.loadavg();
  await stopAll();
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`written ${out} (load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')})`);
}

main().catch(async (e) => {
  console.error(e);
  await stopAll();
  process.exit(1);
});
