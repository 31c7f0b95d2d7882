import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { startFixtureOrigin, startSampleOrigin, type SampleOrigin } from '@sluice/fixtures';
import { compose, type Composed } from '../compose.js';
import { loadConfigFile, toConfig, type ProxyFlags } from '../config.js';
import { runCli } from '../test-support/run-cli.js';
import { replay, type Comparison, type ReplayReport, type ReplayResult } from './replay.js';
import { parseTrace, readTrace, type ReplayRequest, type Trace } from './trace.js';
import { SAMPLE_DIR, SAMPLE_POLICY } from '../test-support/sample.js';
import { freePort } from '../test-support/ports.js';

// Each test closes what it opened (onTestFinished), so tests can run concurrently.
type Closer = (fn: () => Promise<void>) => void;

/** A Sluice (built as `sluice proxy` builds it) in front of `backend`, on a loopback port. */
async function proxyFor(onEnd: Closer, backend: string, flags: ProxyFlags, file: Parameters<typeof toConfig>[1] = {}): Promise<{ px: Composed; target: URL }> {
  const px = compose(toConfig({ backend: [backend], quiet: true, ...flags }, file));
  onEnd(() => px.close());
  const { port } = await px.proxy.listen(0, '127.0.0.1');
  return { px, target: new URL(`http://127.0.0.1:${port}`) };
}

/**
 * Sluice set up as the sample's Varnish was, from the committed fixtures/sample-vcl.config.mjs (default_ttl 120 s,
 * grace 10 s, and its VCL's one rule, pass /account), in front of the sample origin.
 */
async function sampleStack(onEnd: Closer, flags: ProxyFlags = {}): Promise<{ origin: SampleOrigin; px: Composed; target: URL }> {
  const origin = await startSampleOrigin();
  onEnd(() => origin.close());
  return { origin, ...(await proxyFor(onEnd, origin.url, flags, await loadConfigFile(SAMPLE_POLICY))) };
}

const seqs = (rs: ReplayResult[], pick: (r: ReplayResult) => boolean): number[] => rs.filter(pick).map((r) => r.seq);

describe.concurrent('replaying every trace in shared/varnishlog against a running Sluice', () => {
  it.for(['request.log', 'vxid.log', 'session.log', 'raw.log', 'sample.vsl', 'ncsa.log'])('%s, as fast as possible', async (file, { onTestFinished }) => {
    const { origin, target } = await sampleStack(onTestFinished);
    const rep = await replay(readTrace(path.join(SAMPLE_DIR, file)), file, { target, asap: true, concurrency: 1 });
    const s = rep.summary;
    expect(s).toMatchObject({ replayed: 38, skipped: 0, requests: 38, mode: 'asap' });
    expect(rep.skipped).toEqual([]);
    if (file === 'ncsa.log') {
      // A combined log keeps no Range, If-None-Match or Cookie: the 304s, 206s and 416s come back as 200s.
      const differ = rep.requests.filter((r) => r.match.status === false).map((r) => `${r.url} ${r.recorded.status}`);
      expect(differ).toEqual(['/api/items/1 304', '/video/seg-1.ts 206', '/video/seg-1.ts 206', '/video/seg-1.ts 416', '/video/seg-1.ts 416', '/account 304']);
    } else {
      // The one status Sluice answers differently: a multi-range request gets a multipart 206 where Varnish 7.1
      // answers 416 (seq 14).
      expect(seqs(rep.requests, (r) => r.match.status === false)).toEqual([14]);
      expect(rep.requests[13]?.observed.status).toBe(206);
    }
    // The origin dies mid-body (seq 28): the streamed client is cut, never a clean end.
    // (varnishncsa writes lines in completion order, to the second, so the NCSA order differs a little: by URL.)
    const failed = rep.requests.filter((r) => r.observed.error !== undefined);
    expect(failed.map((r) => r.url)).toEqual(['/broken']);
    expect(failed[0]?.observed.error).toMatch(/mid-body after 2048 bytes of 5000/);
    // seq 34: HTTP/1.1 without Host is a synth 400 here too.
    expect(rep.requests.find((r) => r.recorded.status === 400)?.observed).toMatchObject({ status: 400, outcome: 'synth' });
    if (file === 'ncsa.log') {
      expect(s.outcomesCompared).toBe(0);
    } else {
      // One connection per recorded client connection (the README's 11 sessions), requests kept on theirs.
      expect(s.connections).toBe(11);
      // Sent one after another, every recorded outcome is reproduced (the recorded waiting-list hits are plain hits).
      expect(s.outcomesCompared).toBe(38);
      expect(s.outcomeMismatches).toBe(0);
      expect(s.observedOutcomes).toEqual({ miss: 16, hit: 18, pass: 3, synth: 1 });
      // The POST body was made up at the logged size.
      expect(origin.requests.find((r) => r.method === 'POST')?.bodyBytes).toBe(57);
    }
    // What the origin saw matches origin.out's counts where timing does not matter.
    expect(origin.fetches.get('/api/popular')).toBe(1);
    expect(origin.fetches.get('/img/logo.png')).toBe(1);
    expect(origin.fetches.get('/api/cart')).toBe(2);
    expect(s.ttfbMs?.p50).toBeGreaterThan(0);
  });

  it('request.log on the recorded schedule: coalescing and grace happen as they did under Varnish', async ({ onTestFinished }) => {
    const { origin, target } = await sampleStack(onTestFinished);
    const rep = await replay(readTrace(path.join(SAMPLE_DIR, 'request.log')), 'request.log', { target, speed: 1 });
    expect(rep.summary.mode).toBe('timed');
    expect(rep.summary.connections).toBe(11);
    expect(seqs(rep.requests, (r) => r.match.status === false)).toEqual([14]);
    expect(rep.summary.outcomeMismatches).toBe(0);
    // Five concurrent cold requests for /api/popular: one origin fetch, four coalesced hits.
    expect(origin.fetches.get('/api/popular')).toBe(1);
    expect(rep.requests.slice(22, 26).map((r) => r.observed.outcome)).toEqual(['hit', 'hit', 'hit', 'hit']);
    // seq 35: /news (max-age=2) is stale 3.2 s in: served from grace while one conditional background fetch runs.
    expect(rep.requests[34]?.observed).toMatchObject({ outcome: 'hit', detail: 'grace' });
    expect(origin.requests.filter((r) => r.url === '/news').map((r) => r.inm)).toEqual([undefined, '"bulletin-0611"']);
  });
});

describe('recording: our own log is a valid replay input', () => {
  async function record(format: 'text' | 'ndjson', onEnd: Closer, grouping: 'request' | 'session' | 'vxid' = 'request'): Promise<{ file: string; statuses: number[] }> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-rec-'));
    onEnd(async () => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, `log.${format}`);
    const { target } = await sampleStack(onEnd, { log: format, 'log-file': file, 'log-grouping': grouping });
    const statuses: number[] = [];
    // Its own connection pool: closing it closes the sessions, which -g session prints only then.
    const agent = new Agent({ connections: 1 });
    const send = async (method: string, p: string, headers: Record<string, string> = {}, body?: string): Promise<void> => {
      const r = await request(new URL(p, target), { method, headers: { 'x-client-seq': String(statuses.length + 1), ...headers }, body: body ?? null, dispatcher: agent });
      await r.body.arrayBuffer();
      statuses.push(r.statusCode);
    };
    await send('GET', '/news');
    await send('GET', '/news');
    await send('HEAD', '/api/items/5');
    await send('GET', '/api/items/5', { 'if-none-match': 'W/"item-5-rev3"' });
    await send('GET', '/account', { cookie: 'sid=1' });
    await send('GET', '/api/cart');
    await send('GET', '/api/cart');
    await send('POST', '/login', { 'content-type': 'application/x-www-form-urlencoded' }, 'user=demo&password=secret');
    await send('GET', '/no/such/page');
    await send('GET', '/no/such/page');
    await send('GET', '/video/seg-1.ts', { range: 'bytes=0-1023' });
    await send('GET', '/api/search?q=t%C3%A4st&x=1', { 'x-note': 'tab\there "q" back\\slash' });
    await agent.close();
    // The log is written every 20 ms; wait until all 12 requests are in the file.
    const groups = (): number => (readFileSync(file, 'utf8').match(format === 'ndjson' ? /"type":"Request","records":\[\["Begin","req \d+ rxreq"\]/g : /<< Request/g) ?? []).length;
    for (let i = 0; i < 300 && groups() < 12; i++) await new Promise((r) => setTimeout(r, 10));
    return { file, statuses };
  }

  it.for([
    ['text', 'request'],
    ['ndjson', 'request'],
    ['text', 'session'],
    ['text', 'vxid'],
  ] as const)('%s log (-g %s): every request replays with the recorded status and outcome, headers as sent', async ([format, grouping], { onTestFinished }) => {
    const { file, statuses } = await record(format, onTestFinished, grouping);
    if (grouping === 'session') {
      // Session blocks (level 1) holding the requests (level 2) and their fetches (level 3). undici opens more than
      // one connection here (it drops a connection after a HEAD), so count sessions from the requests' Begin.
      const text = readFileSync(file, 'utf8');
      const heads = text.split('\n').filter((l) => l.startsWith('*'));
      const sessions = new Set([...text.matchAll(/^-- {2}Begin {10}req (\d+) rxreq$/gm)].map((m) => m[1]));
      expect(heads.filter((h) => h.startsWith('*   << Session')).map((h) => h.replace(/^.*>> (\d+) *$/, '$1')).sort()).toEqual([...sessions].sort());
      expect(heads.filter((h) => h.startsWith('**  << Request'))).toHaveLength(12);
      expect(heads.filter((h) => h.startsWith('*** << BeReq')).length).toBeGreaterThan(0);
      expect(heads.some((h) => /^\*? +<< Request/.test(h) && !h.startsWith('**'))).toBe(false);
    }
    const trace = readTrace(file);
    expect(trace.format).toBe(format === 'text' ? 'varnishlog' : 'ndjson');
    expect(trace.skipped).toEqual([]);
    expect(trace.requests.map((r) => r.recorded.status)).toEqual(statuses);
    expect(trace.requests.map((r) => r.recorded.outcome)).toEqual(['miss', 'hit', 'miss', 'hit', 'pass', 'miss', 'miss', 'pass', 'miss', 'hit', 'miss', 'miss']);
    const search = trace.requests[11];
    expect(search?.url).toBe('/api/search?q=t%C3%A4st&x=1');
    expect(search?.headers).toContainEqual(['x-note', 'tab\there "q" back\\slash']);
    expect(search?.headers.some(([n]) => n.toLowerCase() === 'x-forwarded-for')).toBe(false);
    expect(trace.requests[7]?.bodyBytes).toBe(25);

    const { origin, target } = await sampleStack(onTestFinished);
    const rep: ReplayReport = await replay(trace, 'own', { target, asap: true, concurrency: 1 });
    expect(rep.summary).toMatchObject({ replayed: 12, statusMismatches: 0, outcomeMismatches: 0, outcomesCompared: 12, errors: 0 });
    expect(origin.requests.find((r) => r.method === 'POST')?.bodyBytes).toBe(25);
    expect(origin.requests.find((r) => r.url.startsWith('/api/search'))?.url).toBe('/api/search?q=t%C3%A4st&x=1');
  });
});

describe('replaying a log of sliced requests', () => {
  async function slicedStack(onEnd: Closer, flags: ProxyFlags = {}): Promise<URL> {
    const origin = await startFixtureOrigin();
    onEnd(() => origin.close());
    return (await proxyFor(onEnd, origin.url, { 'slice-size': '64k', 'slice-url': '^/big/', ...flags })).target;
  }

  it('the client request replays; its segment subrequests are listed as made by the target', async ({ onTestFinished }) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-rec-'));
    onTestFinished(async () => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'sliced.log');
    const rec = await slicedStack(onTestFinished, { log: 'text', 'log-file': file });
    // 200 KiB in 64 KiB segments: bytes 150000-150099 are in segment 2, which also makes the meta object (issue 13).
    const r = await request(new URL('/big/200k', rec), { headers: { range: 'bytes=150000-150099' } });
    await r.body.arrayBuffer();
    expect(r.statusCode).toBe(206);
    for (let i = 0; i < 200 && !/<< Request/.test(readFileSync(file, 'utf8')); i++) await new Promise((res) => setTimeout(res, 10));
    const trace = readTrace(file);
    expect(trace.requests).toHaveLength(1);
    expect(trace.requests[0]?.recorded).toMatchObject({ status: 206, outcome: 'miss', detail: 'slice' });
    expect(trace.skipped.map((k) => k.reason)).toEqual([expect.stringMatching(/^slicer segment subrequest of request \d+/)]);
    const target = await slicedStack(onTestFinished);
    const rep = await replay(trace, 'sliced', { target, asap: true });
    expect(rep.requests[0]?.observed).toMatchObject({ status: 206, outcome: 'miss', detail: 'slice', bodyBytes: 100 });
    expect(rep.summary).toMatchObject({ statusMismatches: 0, outcomeMismatches: 0 });
  });
});

describe('replay client', () => {
  it('a kept-alive connection the target dropped is retried once on a new one, not reported as an error', async ({ onTestFinished }) => {
    // Each connection answers one request and drops the next one unanswered (an idle-timeout race, made certain).
    let connections = 0;
    const server = net.createServer((sock) => {
      connections++;
      let requests = 0;
      sock.on('data', () => {
        if (++requests === 1) sock.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncache-status: t; hit\r\n\r\nok');
        else sock.destroy();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    onTestFinished(() => new Promise<void>((r) => server.close(() => r())));
    const trace = parseTrace(Buffer.from(['/a', '/b', '/c'].map((u) => `127.0.0.1 - - [21/Nov/2026:21:05:18 +0000] "GET http://x${u} HTTP/1.1" 200 2 "-" "t"\n`).join('')), 'three.log');
    const rep = await replay(trace, 'three.log', { target: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`), asap: true });
    expect(rep.summary).toMatchObject({ replayed: 3, errors: 0, statusMismatches: 0 });
    // /b and /c each found their reused connection dropped and went again on a fresh one.
    expect(connections).toBe(3);
    expect(rep.summary.connections).toBe(3);
  });
  it('on the recorded schedule, a session whose previous response is still arriving waits for it on its one connection', async ({ onTestFinished }) => {
    // The first response is held 300 ms; the session's second request was recorded 20 ms after the first. A recorded
    // session is one connection whose requests went one after another, so the second waits (late) instead of opening
    // a second connection: the count of connections cannot depend on how fast the target answers.
    let connections = 0;
    const arrivals: string[] = [];
    const server = net.createServer((sock) => {
      connections++;
      sock.on('data', (d) => {
        const url = /^GET (\S+)/.exec(d.toString('latin1'))?.[1] ?? '?';
        arrivals.push(url);
        const answer = (): void => void sock.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
        if (url === '/slow') setTimeout(answer, 300);
        else answer();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    onTestFinished(() => new Promise<void>((r) => server.close(() => r())));
    const req = (seq: number, url: string, startMs: number, session: string): ReplayRequest => ({
      seq, ref: `test ${seq}`, startMs, method: 'GET', url, protocol: 'HTTP/1.1', headers: [['Host', 'x']], bodyBytes: 0, session,
      recorded: { status: 200, outcome: 'unknown' }, notes: [],
    });
    const trace: Trace = { format: 'varnishlog', skipped: [], requests: [req(1, '/slow', 1000, 's1'), req(2, '/next', 1020, 's1'), req(3, '/other', 1030, 's2')] };
    const rep = await replay(trace, 'sessions', { target: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`), speed: 1 });
    expect(rep.summary).toMatchObject({ replayed: 3, errors: 0, connections: 2 });
    expect(connections).toBe(2);
    // The other session went on schedule; /next only after /slow's response.
    expect(arrivals).toEqual(['/slow', '/other', '/next']);
    expect(rep.requests[1]?.lagMs).toBeGreaterThanOrEqual(250);
  });
});

describe('replay to an https:// target', () => {
  it('verifies the certificate against --ca, refuses it without, and skips verification only with --insecure', async ({ onTestFinished }) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-tls-'));
    onTestFinished(async () => rmSync(dir, { recursive: true, force: true }));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=replay.test', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
    const seen: string[] = [];
    const server = https.createServer({ cert: readFileSync(path.join(dir, 'cert.pem')), key: readFileSync(path.join(dir, 'key.pem')) }, (req, res) => {
      seen.push(req.url ?? '');
      res.writeHead(200, { 'cache-status': 'tls-peer; hit' });
      res.end('ok');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    onTestFinished(() => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }));
    const target = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const trace = path.join(dir, 'access.log');
    writeFileSync(trace, ['/a', '/b'].map((u) => `127.0.0.1 - - [21/Nov/2026:21:05:18 +0000] "GET http://127.0.0.1${u} HTTP/1.1" 200 2 "-" "t"\n`).join(''));

    const verified = await runCli(['replay', trace, '--target', target, '--ca', path.join(dir, 'cert.pem'), '--asap', '--json']);
    expect(verified.code).toBe(0);
    const rep = JSON.parse(verified.stdout) as ReplayReport;
    expect(rep.requests.map((r) => [r.observed.status, r.observed.outcome, r.observed.bodyBytes])).toEqual([[200, 'hit', 2], [200, 'hit', 2]]);
    expect(seen).toEqual(['/a', '/b']);

    const refused = JSON.parse((await runCli(['replay', trace, '--target', target, '--asap', '--json'])).stdout) as ReplayReport;
    expect(refused.summary.errors).toBe(2);
    expect(refused.requests[0]?.observed.error).toMatch(/^connection failed: .*certificate/);
    expect(seen).toHaveLength(2);

    const insecure = await runCli(['replay', trace, '--target', target, '--insecure', '--asap', '--json']);
    expect((JSON.parse(insecure.stdout) as ReplayReport).summary.errors).toBe(0);
    expect(insecure.stderr).toMatch(/--insecure: https certificates are not verified/);
  });
});

describe('sluice replay (CLI)', () => {
  it('--json prints one object with summary, requests and skipped', async ({ onTestFinished }) => {
    const { target } = await sampleStack(onTestFinished);
    const r = await runCli(['replay', path.join(SAMPLE_DIR, 'request.log'), '--target', target.origin, '--asap', '--concurrency', '2', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as ReplayReport;
    expect(out.summary).toMatchObject({ replayed: 38, skipped: 0, mode: 'asap', concurrency: 2, format: 'varnishlog' });
    expect(out.requests[0]).toMatchObject({
      seq: 1,
      method: 'GET',
      url: '/news',
      recorded: { status: 200, outcome: 'miss' },
      observed: { status: 200, outcome: 'miss', ttfbMs: expect.any(Number) },
    });
    expect(out.skipped).toEqual([]);
  });

  it('two --target: each replayed in turn, then the requests where they answered differently', async ({ onTestFinished }) => {
    const a = await sampleStack(onTestFinished);
    // The second proxy runs without the sample policy, so it lacks Varnish's default_ttl: the 404 (no Cache-Control)
    // is not kept and seq 30 is a miss there. (/account carries a Cookie, so the builtin rules pass it anyway.) It runs
    // the varnish profile with default_ttl 0 (the rfc profile would also store the Set-Cookie response of seq 19, so
    // seq 20 would differ too), so that default_ttl is the one difference between the two.
    const bOrigin = await startSampleOrigin();
    onTestFinished(() => bOrigin.close());
    const b = await proxyFor(onTestFinished, bOrigin.url, { profile: 'varnish', 'default-ttl': '0s' });
    const r = await runCli(['replay', path.join(SAMPLE_DIR, 'request.log'), '--target', a.target.origin, '--target', b.target.origin, '--asap', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as Comparison;
    expect(out.targets).toEqual([a.target.origin, b.target.origin]);
    expect(out.reports.map((rep) => rep.summary.replayed)).toEqual([38, 38]);
    expect(out.differences.map((d) => d.seq)).toEqual([30]);
    expect(out.differences[0]?.observed.map((o) => `${o.status} ${o.outcome}`)).toEqual(['404 hit', '404 miss']);
    // The text form (caches are warm by now, so only the layout is checked).
    const text = await runCli(['replay', path.join(SAMPLE_DIR, 'request.log'), '--target', a.target.origin, '--target', b.target.origin, '--asap']);
    expect(text.stdout).toContain(`=== ${a.target.origin} ===`);
    expect(text.stdout).toContain(`=== compared: ${a.target.origin} vs ${b.target.origin} ===`);
    expect(text.stdout).toMatch(/same status and outcome on every target: \d+ of 38/);
  });

  it('the text report lists each request, the mismatches and the summary', async ({ onTestFinished }) => {
    const { target } = await sampleStack(onTestFinished);
    const r = await runCli(['replay', path.join(SAMPLE_DIR, 'vxid.log'), '--target', target.origin, '--asap']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ +1 {2}GET +\/news +200 miss +200 miss +[\d.]+$/m);
    expect(r.stdout).toMatch(/^ +14 {2}GET .*416 hit +206 hit .*! status differs$/m);
    expect(r.stdout).toMatch(/replayed 38, skipped 0, errors 1/);
    expect(r.stdout).toMatch(/status mismatches 1; outcome mismatches 0 of 38 compared/);
    expect(r.stdout).toMatch(/ttfb ms observed: p50 [\d.]+ {2}p90 [\d.]+ {2}p99 [\d.]+ {2}max [\d.]+/);
    expect(r.stdout).toMatch(/\nMismatches:\n {2}14 GET \/video\/seg-1\.ts: status 416 -> 206\n {2}28 GET \/broken: connection closed mid-body after 2048 bytes of 5000\n/);
  });

  it.each([
    [['replay', '/nonexistent/trace.log', '--target', 'http://127.0.0.1:9'], /^sluice: cannot read \/nonexistent\/trace.log: no such file\n$/],
    [['replay', path.join(SAMPLE_DIR, 'README.md'), '--target', 'http://127.0.0.1:9'], /^sluice: README.md: not a trace Sluice can read/],
    [['replay', path.join(SAMPLE_DIR, 'ncsa.log'), '--target', 'nope'], /^sluice: --target "nope" is not a URL/],
    [['replay', path.join(SAMPLE_DIR, 'ncsa.log'), '--target', 'http://127.0.0.1:9', '--speed', '0'], /^sluice: --speed must be a number above 0/],
    [['replay', path.join(SAMPLE_DIR, 'ncsa.log'), '--target', 'http://127.0.0.1:9', '--concurrency', '4'], /^sluice: --concurrency needs --asap/],
    [['replay', path.join(SAMPLE_DIR, 'ncsa.log'), '--target', 'http://127.0.0.1:9', '--host', 'a b'], /^sluice: --host "a b" is not a host\[:port\]/],
    [['replay', path.join(SAMPLE_DIR, 'ncsa.log'), '--target', 'https://127.0.0.1:9', '--ca', '/nope/ca.pem'], /^sluice: --ca: cannot read \/nope\/ca\.pem \(ENOENT\)/],
    [['replay', path.join(SAMPLE_DIR, 'ncsa.log'), '--target', 'ftp://127.0.0.1:9'], /^sluice: --target must be an http:\/\/ or https:\/\/ URL/],
  ])('bad input %j: one line and exit 2', async (args, message) => {
    const r = await runCli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  /** An NCSA trace of GETs, each recorded with `status`, in a temporary directory. */
  function ncsaTrace(onEnd: Closer, urls: string[], status: number): string {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-trace-'));
    onEnd(async () => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'access.log');
    writeFileSync(file, urls.map((u) => `127.0.0.1 - - [21/Nov/2026:21:05:18 +0000] "GET http://127.0.0.1${u} HTTP/1.1" ${status} 10 "-" "t"\n`).join(''));
    return file;
  }

  it('exits 1 when requests got no response, after printing the report', async ({ onTestFinished }) => {
    const trace = ncsaTrace(onTestFinished, ['/a', '/b'], 200);
    const target = `http://127.0.0.1:${await freePort()}`;
    const r = await runCli(['replay', trace, '--target', target, '--asap']);
    expect(r.stdout).toMatch(/replayed 2, skipped 0, errors 2/);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(/^sluice: 2 of 2 requests got no response from http:\/\/127\.0\.0\.1:\d+ \(connection failed: .*ECONNREFUSED/);
    expect(r.code).toBe(1);
    const json = await runCli(['replay', trace, '--target', target, '--asap', '--json']);
    expect((JSON.parse(json.stdout) as ReplayReport).summary.errors).toBe(2);
    expect(json.code).toBe(1);
  });

  it('--fail-on-mismatch: exit 1 when a status differs from the recording (0 without the flag)', async ({ onTestFinished }) => {
    const origin = await startFixtureOrigin();
    onTestFinished(() => origin.close());
    const recorded404 = ncsaTrace(onTestFinished, ['/static/10'], 404);
    const plain = await runCli(['replay', recorded404, '--target', origin.url, '--asap']);
    expect(plain.stdout).toMatch(/status mismatches 1;/);
    expect(plain.code).toBe(0);
    const strict = await runCli(['replay', recorded404, '--target', origin.url, '--asap', '--fail-on-mismatch']);
    expect(strict.stdout).toMatch(/status mismatches 1;/);
    expect(strict.stderr.trim().split('\n').at(-1)).toBe(`sluice: 1 of 1 requests answered differently from the recording at ${origin.url} (1 status, 0 outcome mismatches) and --fail-on-mismatch is set`);
    expect(strict.code).toBe(1);
    const same = ncsaTrace(onTestFinished, ['/static/10'], 200);
    const ok = await runCli(['replay', same, '--target', origin.url, '--asap', '--fail-on-mismatch', '--json']);
    expect((JSON.parse(ok.stdout) as ReplayReport).summary.statusMismatches).toBe(0);
    expect(ok.code).toBe(0);
  });

  it('a target that refuses connections: every request reported with the error, none dropped', async () => {
    const rep = await replay(readTrace(path.join(SAMPLE_DIR, 'ncsa.log')), 'ncsa.log', { target: new URL('http://127.0.0.1:9'), asap: true, concurrency: 4 });
    expect(rep.summary.replayed).toBe(38);
    expect(rep.summary.errors).toBe(38);
    expect(rep.requests.every((r) => /connection failed/.test(r.observed.error ?? ''))).toBe(true);
  });
});
