// The floor of a Node proxy's byte path: a raw TCP forwarder (no HTTP parsing, no cache), each client connection
// piped to a new origin connection with 'data' -> write and pause on a full socket. Prints its address; run
// bench/bulk-client.mjs against it to get the CPU per MiB a Node process pays just to move the bytes.
// Usage: node bench/bulk-floor-pipe.mjs ORIGIN_URL [--retain] [--nodelay]
import net from 'node:net';
const o = new URL(process.argv[2]);
/** --retain: keep every chunk until the response ends, as a cache storing the object does. */
const retain = process.argv.includes('--retain');
/** --nodelay: TCP_NODELAY on the client socket, as Sluice's connections set it. */
const noDelay = process.argv.includes('--nodelay');
const srv = net.createServer((c) => {
  if (noDelay) c.setNoDelay(true);
  const up = net.connect(Number(o.port), o.hostname);
  c.on('data', (d) => up.write(d));
  const kept = [];
  up.on('data', (d) => {
    if (retain) kept.push(d);
    if (!c.write(d)) {
      up.pause();
      c.once('drain', () => up.resume());
    }
  });
  up.on('end', () => {
    kept.length = 0;
    c.end();
  });
  c.on('end', () => up.end());
  c.on('error', () => up.destroy());
  up.on('error', () => c.destroy());
});
srv.listen(0, '127.0.0.1', () => console.log(`listening on http://127.0.0.1:${srv.address().port}`));
