import type net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { ProxyHooks } from '../policy/hooks.js';
import { parseRawResponse, rawExchange, startProxy, startRawOrigin, useCleanup, useUncaughtRecorder } from '../test-support/harness.js';

/**
 * Session 7 attack: an origin that lies (Content-Length longer or shorter than the body, chunked with bad sizes, a
 * head over the limits, a flood of 1xx, a response written before the request arrived) for a miss, a pass, a sliced
 * object and an ESI include; and malformed request bytes on raw sockets. Each exchange must end with an error status
 * or a hang-up the client can detect (Content-Length short, chunked without terminator), nothing truncated may be
 * cached (the next request goes to the origin again and gets the whole body), and the proxy keeps serving others.
 */
const track = useCleanup();
const uncaught = useUncaughtRecorder();

const GOOD = 'good-body-0123456789';

type Lie = (sock: net.Socket, head: string) => void;

/** Each lie on the lying path; `/good` and ESI templates answered truthfully. */
const LIES: Record<string, Lie> = {
  'Content-Length longer than the body, then close': (s) => {
    s.end('HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\netag: "e"\r\ncontent-length: 10000\r\n\r\nonly-these-bytes');
  },
  'Content-Length shorter than the body (junk after it on a keep-alive connection)': (s) => {
    s.write(`HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\netag: "e"\r\ncontent-length: 5\r\n\r\nshortHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nPOISON`);
  },
  'chunked with a size that is not hex': (s) => {
    s.write('HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n');
  },
  'chunked with a size larger than what follows, then close': (s) => {
    s.end('HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ntransfer-encoding: chunked\r\n\r\nfff\r\nhello');
  },
  'a 200 KiB response header': (s) => {
    s.write(`HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\nx-big: ${'h'.repeat(200 * 1024)}\r\ncontent-length: 2\r\n\r\nok`);
  },
  '2000 informational 1xx before the response': (s) => {
    s.write(Buffer.from('HTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\n'.repeat(2000)));
    s.write(`HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: ${GOOD.length}\r\n\r\n${GOOD}`);
  },
};

/** An origin lying on /lie* once per `lie`, truthful on everything else (and on /lie* once `honest` is set). */
async function lyingOrigin(lie: Lie): Promise<{ url: string; honest: boolean; lies: number; count: number; close(): Promise<void> }> {
  const state = { honest: false, lies: 0 };
  const o = await startRawOrigin((s, head) => {
    const url = /^\w+ (\S+)/.exec(head)?.[1] ?? '';
    if (url.startsWith('/esi')) {
      const tpl = '<p>[<esi:include src="/lie-frag"/>]</p>';
      return void s.write(`HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\nx-esi: 1\r\ncontent-length: ${tpl.length}\r\n\r\n${tpl}`);
    }
    if (url.startsWith('/lie') && !state.honest) {
      state.lies++;
      return lie(s, head);
    }
    const range = /\r\nrange: bytes=(\d+)-(\d+)/i.exec(head);
    if (range !== null) {
      const a = Number(range[1]);
      const b = Math.min(GOOD.length - 1, Number(range[2]));
      return void s.write(`HTTP/1.1 206 Partial Content\r\ncache-control: max-age=60\r\netag: "e"\r\ncontent-range: bytes ${a}-${b}/${GOOD.length}\r\ncontent-length: ${b - a + 1}\r\n\r\n${GOOD.slice(a, b + 1)}`);
    }
    s.write(`HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\netag: "e"\r\ncontent-length: ${GOOD.length}\r\n\r\n${GOOD}`);
  });
  return Object.assign(state, {
    url: o.url,
    get count() {
      return o.count;
    },
    close: () => o.close(),
  });
}

const esiHooks: ProxyHooks = {
  upstreamResponseFilter(beresp) {
    if (beresp.headers['x-esi'] !== undefined) beresp.doEsi = true;
    return undefined;
  },
};

/** What a client got: a whole, correctly framed body, or something it can tell is not one. */
async function exchange(port: number, path: string, extra = ''): Promise<{ status: number; body: string; whole: boolean }> {
  const raw = await rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n${extra}\r\n`);
  if (raw.indexOf('\r\n\r\n') < 0) return { status: 0, body: '', whole: false };
  const r = parseRawResponse(raw);
  const cl = r.headers['content-length'];
  const whole = r.chunked ? r.terminated : cl === undefined || r.body.length === Number(cl);
  return { status: r.status, body: r.body.toString('latin1'), whole };
}

const KINDS = [
  { kind: 'miss', path: '/lie-miss', extra: '', opts: {} },
  { kind: 'pass', path: '/lie-pass', extra: 'Authorization: Basic eDp5\r\n', opts: {} },
  { kind: 'sliced object', path: '/lie-sliced', extra: '', opts: { slice: { sizeBytes: 8, minBytes: 0 } } },
  { kind: 'ESI include', path: '/esi-page', extra: '', opts: { hooks: esiHooks } },
] as const;

describe('s7: an origin that lies, for a miss, a pass, a sliced object, an ESI include', () => {
  for (const [lieName, lie] of Object.entries(LIES)) {
    for (const k of KINDS) {
      it(`${lieName} / ${k.kind}: the client gets an error or a detectable cut, nothing wrong is cached, others are served`, async () => {
        const o = track(await lyingOrigin(lie));
        const px = track(await startProxy(o.url, k.opts));
        const first = await exchange(px.port, k.path, k.extra);
        expect(o.lies).toBeGreaterThan(0);
        if (first.whole && first.status === 200) {
          // A clean 200 must carry no lie: the truthful body (the 1xx flood), or the ESI page with what was included.
          expect(first.body).not.toContain('POISON');
          expect(first.body).not.toContain('world');
          if (k.kind !== 'ESI include') expect([GOOD, 'short', 'ok']).toContain(first.body);
        }
        // Others are served meanwhile, with their own bytes (no junk left on a reused origin connection).
        for (let i = 0; i < 3; i++) {
          const g = await exchange(px.port, `/good${i}`);
          expect(g).toEqual({ status: 200, body: GOOD, whole: true });
        }
        // Nothing truncated or wrong was cached: with the origin honest now, the same request gets the truth.
        o.honest = true;
        const again = await exchange(px.port, k.path, k.extra);
        expect(again.whole).toBe(true);
        expect(again.status).toBe(200);
        if (k.kind === 'ESI include') expect([`<p>[${GOOD}]</p>`, '<p>[short]</p>', '<p>[ok]</p>']).toContain(again.body);
        else if (!(first.whole && first.status === 200)) expect(again.body).toBe(GOOD);
        else expect([GOOD, 'short', 'ok']).toContain(again.body);
        expect(uncaught).toEqual([]);
      });
    }
  }

  it('a response written before the request arrived (on connect): the proxy still answers and keeps serving', async () => {
    let n = 0;
    const o = track(
      await startRawOrigin((s) => {
        n++;
        s.write(`HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: ${GOOD.length}\r\n\r\n${GOOD}`);
      }),
    );
    // Every new origin connection is greeted with an unasked-for response before the request is written.
    const net = await import('node:net');
    const early = net.createServer((c) => {
      const up = net.connect(Number(new URL(o.url).port), '127.0.0.1');
      c.write(`HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nEARLY`);
      c.on('data', (d) => up.write(d));
      up.on('data', (d) => c.write(d));
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
      c.on('close', () => up.destroy());
      up.on('close', () => c.destroy());
    });
    await new Promise<void>((r) => early.listen(0, '127.0.0.1', () => r()));
    track({ close: () => new Promise<void>((r) => early.close(() => r())) });
    const px = track(await startProxy(`http://127.0.0.1:${(early.address() as net.AddressInfo).port}`));
    const first = await exchange(px.port, '/x');
    // Either the unasked-for bytes are refused (an error status) or taken as the answer; never a cut or a mix.
    expect(first.whole).toBe(true);
    expect(['EARLY', GOOD, ...(first.status >= 500 ? [first.body] : [])]).toContain(first.body);
    for (let i = 0; i < 3; i++) {
      const g = await exchange(px.port, `/y${i}`);
      expect(g.whole).toBe(true);
      expect([200, 502, 503]).toContain(g.status);
    }
    expect(uncaught).toEqual([]);
    early.close();
  });
});

describe('s7: malformed request bytes on raw sockets, then a good request', () => {
  const BAD: Record<string, string> = {
    'a NUL in the request line': 'GET /a\0b HTTP/1.1\r\nHost: t\r\n\r\n',
    'Content-Length and chunked together': 'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'two different Content-Lengths': 'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde',
    'a negative Content-Length': 'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n',
    'a chunk size overflowing 2^53': 'POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nx\r\n0\r\n\r\n',
    'a space before the colon': 'GET / HTTP/1.1\r\nHost : t\r\n\r\n',
    'an obs-fold header': 'GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n  2\r\n\r\n',
    'HTTP/2 preface on an HTTP/1 port': 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
    '300 KiB of header': `GET / HTTP/1.1\r\nHost: t\r\nX-A: ${'a'.repeat(300 * 1024)}\r\n\r\n`,
    'binary garbage': Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131 + 7) & 0xff)).toString('latin1'),
  };
  for (const [name, bytes] of Object.entries(BAD)) {
    it(`${name}: a 4xx/5xx or a close, never a request to the origin, and the next client is served`, async () => {
      const o = track(await lyingOrigin(() => undefined));
      const px = track(await startProxy(o.url));
      const raw = await rawExchange(px.port, Buffer.from(bytes, 'latin1'));
      if (raw.length > 0) expect(Number(/^HTTP\/1\.1 (\d{3})/.exec(raw.toString('latin1'))?.[1])).toBeGreaterThanOrEqual(400);
      expect(o.count).toBe(0);
      expect(await exchange(px.port, '/good')).toEqual({ status: 200, body: GOOD, whole: true });
      expect(uncaught).toEqual([]);
    });
  }
});
