// The floor of a Node proxy's byte path without a Buffer per socket read: a raw TCP forwarder (no HTTP parsing) whose
// origin sockets read through Node's `onread` option into one reused static buffer (process-wide, READ bytes), each
// read copied into retained 1 MiB slabs (as a cache stores the body) and written to the client as views of the slab.
// A full client socket stops the origin read (the callback returns false) until 'drain'. Prints its address; run
// bench/bulk-client.mjs against it (or bench/bulk.mjs, which does) for the CPU per MiB.
// Usage: node bench/bulk-floor-onread.mjs ORIGIN_URL [--read BYTES] [--no-retain]
import net from 'node:net';
const o = new URL(process.argv[2]);
const ri = process.argv.indexOf('--read');
const READ = ri >= 0 ? Number(process.argv[ri + 1]) : 64 * 1024;
/** --no-retain: write the bytes out of the static buffer (copied by write only when queued), keep nothing. */
const retain = !process.argv.includes('--no-retain');
const SLAB = 1024 * 1024;
const staticBuf = Buffer.allocUnsafeSlow(READ);
const srv = net.createServer((c) => {
  c.setNoDelay(true);
  const slabs = [];
  let slab = Buffer.allocUnsafeSlow(SLAB);
  let used = 0;
  let paused = false;
  const up = net.connect({
    port: Number(o.port),
    host: o.hostname,
    onread: {
      buffer: staticBuf,
      callback(n, buf) {
        let ok = true;
        if (!retain) ok = c.write(Buffer.from(buf.subarray(0, n)));
        else {
          let at = 0;
          while (at < n) {
            if (used === SLAB) {
              slabs.push(slab);
              slab = Buffer.allocUnsafeSlow(SLAB);
              used = 0;
            }
            const k = Math.min(n - at, SLAB - used);
            buf.copy(slab, used, at, at + k);
            ok = c.write(slab.subarray(used, used + k)) && ok;
            used += k;
            at += k;
          }
        }
        if (ok) return true;
        paused = true;
        c.once('drain', () => {
          paused = false;
          up.resume();
        });
        return false;
      },
    },
  });
  c.on('data', (d) => up.write(d));
  up.on('end', () => {
    slabs.length = 0;
    c.end();
  });
  c.on('end', () => up.end());
  c.on('error', () => up.destroy());
  up.on('error', () => c.destroy());
  void paused;
});
srv.listen(0, '127.0.0.1', () => console.log(`listening on http://127.0.0.1:${srv.address().port}`));
