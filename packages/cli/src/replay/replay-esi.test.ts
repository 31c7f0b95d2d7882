import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { compose } from '../compose.js';
import { toConfig, type ConfigFile, type ProxyFlags } from '../config.js';
import { replay } from './replay.js';
import { readTrace } from './trace.js';

type Closer = (fn: () => Promise<void>) => void;

/** The ESI idiom of vcl_backend_response, as a config file's hooks. */
const esiPolicy: ConfigFile = {
  hooks: {
    upstreamResponseFilter(beresp) {
      if (/ESI\/1\.0/.test(String(beresp.headers['surrogate-control'] ?? ''))) beresp.doEsi = true;
      return undefined;
    },
  },
};

/** A site whose page includes two fragments, and Sluice (as `sluice proxy` builds it) in front of it. */
async function esiStack(onEnd: Closer, flags: ProxyFlags = {}): Promise<URL> {
  const origin = await startScriptedOrigin((req, res) => {
    const page = req.url === '/page';
    res.writeHead(200, { 'cache-control': 'max-age=60', ...(page ? { 'surrogate-control': 'content="ESI/1.0"' } : {}) });
    res.end(page ? '<html><esi:include src="/a"/>-<esi:include src="/b"/></html>' : `frag ${req.url}`);
  });
  onEnd(() => origin.close());
  const px = compose(toConfig({ backend: [origin.url], quiet: true, ...flags }, esiPolicy));
  onEnd(() => px.close());
  const { port } = await px.proxy.listen(0, '127.0.0.1');
  return new URL(`http://127.0.0.1:${port}`);
}

describe('replaying a log of ESI pages', () => {
  it('the page replays with its status and outcome; its includes are listed as made by the target', async ({ onTestFinished }) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-esi-'));
    onTestFinished(async () => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'esi.log');
    const rec = await esiStack(onTestFinished, { log: 'text', 'log-file': file });
    for (let i = 0; i < 2; i++) {
      const r = await request(new URL('/page', rec));
      expect(await r.body.text()).toBe('<html>frag /a-frag /b</html>');
    }
    const groups = (): number => (readFileSync(file, 'utf8').match(/^\* {3}<< Request/gm) ?? []).length;
    for (let i = 0; i < 200 && groups() < 2; i++) await new Promise((res) => setTimeout(res, 10));
    const text = readFileSync(file, 'utf8');
    // As varnishlog -g request prints them: the include one level down, Begin naming its parent, linked from it.
    expect(text).toMatch(/^\*\* {2}<< Request {2}>> \d+/m);
    expect(text).toMatch(/^-- {2}Begin {10}req \d+ esi$/m);
    expect(text).toMatch(/^- {3}Link {11}req \d+ esi$/m);
    const trace = readTrace(file);
    expect(trace.requests.map((r) => [r.url, r.recorded.status, r.recorded.outcome])).toEqual([
      ['/page', 200, 'miss'],
      ['/page', 200, 'hit'],
    ]);
    expect(trace.skipped).toHaveLength(4);
    for (const k of trace.skipped) expect(k.reason).toMatch(/^ESI subrequest of request \d+: the target makes it/);
    const rep = await replay(trace, 'esi', { target: await esiStack(onTestFinished), asap: true, concurrency: 1 });
    expect(rep.requests.map((r) => r.observed.outcome)).toEqual(['miss', 'hit']);
    expect(rep.summary).toMatchObject({ replayed: 2, statusMismatches: 0, outcomeMismatches: 0 });
  });
});
