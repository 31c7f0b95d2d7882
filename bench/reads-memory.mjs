// What the origin read buffers (packages/origin-client/src/socket-reads.ts, session 11) cost in memory, this tree
// against --base, interleaved (side order alternating per round), each side in a child process with --expose-gc:
// - paused: N clients each fetch a 64 MiB pass (cache-control: private) and stop reading after the first bytes; the
//   origin writes 1 MiB pieces as fast as its sockets take them. After 1.5 s, per client: V8 arrayBuffers growth
//   (after full GCs), bytes fetched but not delivered (s_beresp - s_resp: the transit measure), bytes the origin wrote.
// - idle: N origin connections each served one 2 MiB body at once, then idle: arrayBuffers per connection (after
//   GCs) with the connections open minus after the client closed them.
// Usage: node bench/reads-memory.mjs [--base DIR] [--rounds R] [--clients N] [--out FILE]
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

if (process.argv[2] === '--child') {
  const [, , , root, mode, n] = process.argv;
  console.log(JSON.stringify(await child(root, mode, Number(n))));
  process.exit(0);
}

async function child(root, mode, N) {
  const { createProxy } = await import(`${root}/packages/core/dist/index.js`);
  const { createOriginClient } = await import(`${root}/packages/origin-client/dist/index.js`);
  const SIZE = mode === 'paused' ? 64 * 1024 * 1024 : 2 * 1024 * 1024;
  const piece = Buffer.alloc(1024 * 1024, 'p');
  let written = 0;
  const waiting = [];
  const srv = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', async () => {
      if (mode === 'idle') {
        waiting.push(s);
        if (waiting.length < N) return;
      }
      for (const w of mode === 'idle' ? waiting.splice(0) : [s]) {
        w.write(`HTTP/1.1 200 OK\r\ncache-control: private\r\ncontent-length: ${SIZE}\r\n\r\n`);
        for (let at = 0; at < SIZE && !w.destroyed; at += piece.length) {
          written += piece.length;
          if (!w.write(piece)) await new Promise((r) => (w.once('drain', r), w.once('close', r)));
        }
      }
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const gcAll = async () => {
    for (let i = 0; i < 3; i++) {
      global.gc();
      await new Promise((r) => setImmediate(r));
    }
    return process.memoryUsage().arrayBuffers;
  };
  const url = `http://127.0.0.1:${srv.address().port}`;
  if (mode === 'idle') {
    const origin = createOriginClient({ backends: [{ url, maxConnections: N }] });
    const ab0 = await gcAll();
    await Promise.all(Array.from({ length: N }, async () => {
      const r = await origin.request({ method: 'GET', path: '/', headers: {}, body: null }, { signal: new AbortController().signal });
      for await (const _ of r.body);
    }));
    const idle = await gcAll();
    await origin.destroy();
    const after = await gcAll();
    srv.close();
    return { idleBytesPerConnection: Math.round((idle - after) / N), leftAfterCloseBytes: after - ab0 };
  }
  const origin = createOriginClient({ backends: [{ url }] });
  const proxy = createProxy({ upstream: origin });
  const { port } = await proxy.listen(0);
  const ab0 = await gcAll();
  const socks = [];
  for (let i = 0; i < N; i++) {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => {});
    c.once('data', () => c.pause());
    c.write(`GET /p${i} HTTP/1.1\r\nHost: t\r\n\r\n`);
    socks.push(c);
  }
  await new Promise((r) => setTimeout(r, 1500));
  const ab1 = await gcAll();
  const st = proxy.stats;
  const out = {
    arrayBuffersPerClientKiB: Math.round((ab1 - ab0) / N / 1024),
    heldPerClientKiB: Math.round((st.s_beresp_bodybytes - st.s_resp_bodybytes) / N / 1024),
    originWrittenPerClientKiB: Math.round(written / N / 1024),
  };
  for (const c of socks) c.destroy();
  await proxy.close();
  await origin.destroy();
  srv.close();
  return out;
}

const base = arg('--base', '/work/s11-base');
const rounds = Number(arg('--rounds', '4'));
const clients = Number(arg('--clients', '20'));
const sides = { this: here, base };
const runs = [];
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? ['this', 'base'] : ['base', 'this'];
  for (const mode of ['paused', 'idle']) {
    for (const side of order) {
      const out = execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child', sides[side], mode, String(clients)], { encoding: 'utf8' });
      const res = { round: r, side, mode, ...JSON.parse(out.trim().split('\n').pop()) };
      runs.push(res);
      console.log(JSON.stringify(res));
    }
  }
}
const summary = {};
for (const mode of ['paused', 'idle']) {
  for (const side of ['this', 'base']) {
    const rs = runs.filter((x) => x.mode === mode && x.side === side);
    const keys = Object.keys(rs[0]).filter((k) => typeof rs[0][k] === 'number' && k !== 'round');
    summary[`${mode}/${side}`] = Object.fromEntries(keys.map((k) => [k, rs.map((x) => x[k]).sort((a, b) => a - b)]));
  }
}
const result = { date: new Date().toISOString(), base, rounds, clients, loadavg: (await import('node:os')).loadavg(), summary, runs };
console.log(JSON.stringify(summary, null, 1));
const outFile = arg('--out', undefined);
if (outFile !== undefined) writeFileSync(outFile, `${JSON.stringify(result, null, 1)}\n`);
