// Helpers for the peer benchmarks (run.mjs, streaming.mjs): process handling, percentiles and the machine note come
// from the CLI's bench module; nginx as a peer cache lives here.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { ProcessGroup, machine, percentiles } from '@sluice/cli/bench';

export { machine, percentiles };
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const group = new ProcessGroup();

/** Runs `sluice <args>` in its own process; resolves with { url, pid, stop } once listening. */
export function startSluice(args) {
  return group.start(args);
}

export function stopAll() {
  return group.stopAll();
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * nginx as a peer cache, when the machine has it (`apt-get install nginx-light`): one worker (Sluice is one thread),
 * proxy_cache in front of `originUrl`, keep-alive to the origin; `opts.slice` ('1m') adds the slice module as its
 * documentation configures it, `opts.maxSize` the cache size. Resolves undefined when nginx is not installed.
 */
export async function startNginxCache(originUrl, port, opts = {}) {
  const { existsSync, mkdtempSync, writeFileSync } = await import('node:fs');
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
      return { url, version };
    } catch {
      // not up yet
    }
  }
  throw new Error('nginx did not start');
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


/**
 * CPU time a process has used, in microseconds, summed over its threads from /proc/PID/task/TID/schedstat
 * (nanoseconds: finer than utime+stime's 10 ms ticks, which a 32 MiB transfer's 50 ms cannot resolve).
 */
export function cpuMicros(pid) {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return ns / 1000;
}
