// Helpers for the peer benchmarks (run.mjs, streaming.mjs, hits.mjs): process handling, percentiles and the machine
// note come from the CLI's bench module; nginx and Varnish as peer caches and process CPU time live here.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { ProcessGroup, machine, percentiles } from '@sluice/cli/bench';

export { machine, percentiles };
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const group = new ProcessGroup();

/**
 * Runs `sluice <args>` in its own process; resolves with { url, pid, stop } once listening. `root`: another checkout's
 * root (built), to run its Sluice beside this one's in the same bench run.
 */
export function startSluice(args, root = undefined) {
  return root === undefined ? group.start(args) : group.start(args, path.join(root, 'packages/cli/bin/run.js'));
}

/**
 * Runs `sluice <args>` from another built checkout at `root` (its packages/cli/bin/run.js), as startSluice does: a
 * baseline beside this checkout's build in the same run (`hits.mjs --baseline DIR`).
 */
export function startSluiceFrom(root, args) {
  return startSluice(args, root);
}

/**
 * GET `url` and read the whole body: status, body bytes, and the times (ms) to the first body byte (undefined when
 * there was no body) and to the last.
 */
export async function timedGet(url, headers = {}) {
  const t0 = performance.now();
  const res = await request(url, { headers });
  let ttfb;
  let bytes = 0;
  for await (const c of res.body) {
    ttfb ??= performance.now() - t0;
    bytes += c.length;
  }
  return { status: res.statusCode, bytes, ttfb, ttlb: performance.now() - t0 };
}

export function stopAll() {
  return group.stopAll();
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * CPU time a process and its child processes (nginx's workers) have used, in ns: the sum over their threads of
 * /proc/<pid>/task/<tid>/schedstat (nanosecond run time, where /proc/<pid>/stat counts 10 ms ticks, too coarse for a
 * 20 ms request). Threads that have exited are not counted (Node's and nginx's live as long as the process).
 * NaN when /proc does not have it (not Linux).
 */
export function cpuNanos(pid) {
  try {
    let ns = threadNanos(pid);
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      let children = '';
      try {
        children = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      } catch {
        // no children file (kernel without CONFIG_PROC_CHILDREN): the process alone
      }
      for (const c of children === '' ? [] : children.split(' ')) ns += cpuNanos(Number(c));
    }
    return ns;
  } catch {
    return NaN;
  }
}

/** Run time of every live thread of one process, ns (/proc/<pid>/task/<tid>/schedstat); throws when it is gone. */
function threadNanos(pid) {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
  return ns;
}

/**
 * nginx as a peer cache, when the machine has it (`apt-get install nginx-light`): one worker (Sluice is one thread),
 * proxy_cache in front of `originUrl`, keep-alive to the origin; `opts.slice` ('1m') adds the slice module as its
 * documentation configures it, `opts.maxSize` the cache size. Resolves { url, version, pid } (the master's pid), or
 * undefined when nginx is not installed.
 */
export async function startNginxCache(originUrl, port, opts = {}) {
  const bin = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));
  if (bin === undefined) return undefined;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-nginx-'));
  const origin = new URL(originUrl);
  writeFileSync(
    path.join(dir, 'nginx.conf'),
    `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  # nginx closes a keep-alive connection after 1000 requests by default; autocannon counts the request in flight then
  # as an error (the hits bench failed on it twice in session 9). Sluice and Varnish have no such limit.
  keepalive_requests 1000000;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=c:10m max_size=${opts.maxSize ?? '256m'};
  upstream o { server ${origin.host}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://o;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache c;
      proxy_cache_lock on;
      add_header X-Cache $upstream_cache_status;${
        opts.slice === undefined
          ? ''
          : `
      slice ${opts.slice};
      proxy_cache_key $uri$is_args$args$slice_range;
      proxy_set_header Range $slice_range;
      proxy_cache_valid 200 206 1h;`
      }
    }
  }
}
`,
  );
  const p = spawn(bin, ['-c', path.join(dir, 'nginx.conf'), '-p', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  group.adopt(p);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 50; i++) {
    await sleep(100);
    try {
      const { request } = await import('undici');
      const r = await request(`${url}/static/1`);
      await r.body.text();
      const version = await new Promise((resolve) => {
        const v = spawn(bin, ['-v'], { stdio: ['ignore', 'ignore', 'pipe'] });
        let e = '';
        v.stderr.on('data', (d) => (e += String(d)));
        v.on('exit', () => resolve(e.trim()));
      });
      return { url, version, pid: p.pid };
    } catch {
      // not up yet
    }
  }
  throw new Error('nginx did not start');
}

/** A free loopback port (for peers that need one named on their command line). */
export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Varnish as a peer cache, when the machine has it (`apt-get install varnish`): in front of `originUrl` on `port`
 * (a free one when omitted), the VCL declaring only the backend so builtin.vcl decides what is cached, `-s malloc`
 * (`opts.storage`, default 256m so 1 MiB objects fit many times). Resolves { url, version, pid, stop } once it answers,
 * undefined when varnishd is not installed. `pid` is the manager's: the cache child is a process of its tree
 * (treeCpuMicros counts both).
 */
export async function startVarnish(originUrl, port, opts = {}) {
  const bin = ['/usr/sbin/varnishd', '/usr/bin/varnishd'].find((p) => existsSync(p));
  if (bin === undefined) return undefined;
  const listenPort = port ?? (await freePort());
  const version = spawnSync(bin, ['-V'], { encoding: 'utf8' }).stderr.split('\n')[0];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-varnish-'));
  const origin = new URL(originUrl);
  const vcl = path.join(dir, 'default.vcl');
  writeFileSync(vcl, `vcl 4.1;\nbackend default { .host = "${origin.hostname}"; .port = "${origin.port}"; }\n`);
  const args = ['-F', '-j', 'none', '-n', path.join(dir, 'vn'), '-a', `127.0.0.1:${listenPort}`, '-T', '127.0.0.1:0', '-f', vcl, '-s', `malloc,${opts.storage ?? '256m'}`];
  const p = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => (err += String(d)));
  group.adopt(p);
  p.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const url = `http://127.0.0.1:${listenPort}`;
  for (let i = 0; i < 100; i++) {
    if (p.exitCode !== null) break;
    await sleep(100);
    try {
      await (await request(`${url}/`)).body.text();
      const stop = () =>
        new Promise((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve();
          p.once('exit', () => resolve());
          p.kill('SIGTERM');
        });
      return { url, version, pid: p.pid, stop };
    } catch {
      // not up yet
    }
  }
  p.kill('SIGTERM');
  throw new Error(`varnishd did not start: ${err.trim()}`);
}

/** The process `pid` and its descendants (Linux /proc): nginx's workers, varnishd's cache child. */
export function processTree(pid) {
  const children = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const ppid = Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  const out = [];
  const walk = (p) => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

/**
 * CPU time the processes `pids` (one pid or a list) have used, in microseconds (each process's threads, from schedstat as cpuNanos, not its
 * children: pass a processTree). A process that ended meanwhile counts nothing.
 */
export function cpuMicros(pids) {
  let ns = 0;
  for (const pid of typeof pids === 'number' ? [pids] : pids) {
    try {
      ns += threadNanos(pid);
    } catch {
      // gone
    }
  }
  return ns / 1000;
}

/**
 * Pins the processes `pids` (every thread) to the CPUs `cpus` ('0', '1', '0-1') with taskset. Returns false (with the
 * reason on stderr) when taskset is missing or refused, so a bench can note it ran unpinned.
 */
export function pin(pids, cpus) {
  for (const pid of pids) {
    const r = spawnSync('taskset', ['-a', '-c', '-p', cpus, String(pid)], { encoding: 'utf8' });
    if (r.status !== 0) {
      console.error(`taskset ${cpus} ${pid}: ${r.error?.message ?? r.stderr.trim()}`);
      return false;
    }
  }
  return true;
}

export async function originBytes(originUrl) {
  return (await (await request(`${originUrl}/stats`)).body.json()).bytes;
}

/**
 * A cold `size`-byte object, a client asks for 1000 bytes in the middle: time to first byte and how many bytes the
 * origin had sent by then, per target ([mode, baseUrl]); `runs` cold objects each.
 */
export async function rangeOnMiss(originUrl, targets, { size, runs }) {
  const start = size / 2;
  const rows = [];
  for (const [mode, base] of targets) {
    const ttfb = [];
    const ttlb = [];
    const sentAtTtfb = [];
    for (let i = 0; i < runs; i++) {
      const url = `${base}/big/${size}?run=${mode}-${i}-${Date.now()}`;
      const before = await originBytes(originUrl);
      const t0 = performance.now();
      const res = await request(url, { headers: { range: `bytes=${start}-${start + 999}` } });
      let first;
      let got = 0;
      let sent;
      for await (const c of res.body) {
        if (first === undefined) {
          first = performance.now() - t0;
          sent = (await originBytes(originUrl)) - before;
        }
        got += c.length;
      }
      if (res.statusCode !== 206 || got !== 1000) throw new Error(`range-on-miss ${mode}: status ${res.statusCode}, ${got} bytes`);
      ttfb.push(first);
      ttlb.push(performance.now() - t0);
      sentAtTtfb.push(sent);
      await sleep(200);
    }
    rows.push({
      name: 'range-on-miss',
      mode,
      objectBytes: size,
      rangeStart: start,
      ttfbMs: percentiles(ttfb),
      ttlbMs: percentiles(ttlb),
      originBytesAtTtfb: sentAtTtfb.sort((a, b) => a - b)[Math.floor(sentAtTtfb.length / 2)],
    });
  }
  return rows;
}

/** Starts `node [flags] script args`, resolves { url, pid, proc, log() } once it prints its address. */
export function startNode(flags, script, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [...flags, script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    let done = false;
    const on = (d) => {
      text += String(d);
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(text);
      if (m !== null && !done) {
        done = true;
        resolve({ url: m[1], pid: p.pid, proc: p, log: () => text });
      }
    };
    p.stdout.on('data', on);
    p.stderr.on('data', on);
    p.on('exit', (code) => done || reject(new Error(`${script} exited ${code}: ${text.trim()}`)));
  });
}
