// Helpers for the peer benchmarks (run.mjs, streaming.mjs): process handling, percentiles and the machine note come
// from the CLI's bench module; nginx as a peer cache lives here.
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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
 * proxy_cache in front of `originUrl`, keep-alive to the origin. Resolves undefined when nginx is not installed.
 */
export async function startNginxCache(originUrl, port) {
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
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=c:10m max_size=256m;
  upstream o { server ${origin.host}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://o;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache c;
      proxy_cache_lock on;
      add_header X-Cache $upstream_cache_status;
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
