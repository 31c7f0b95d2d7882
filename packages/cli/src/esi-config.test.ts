import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { compose } from './compose.js';
import { toConfig } from './config.js';

describe('ESI settings in a config file', () => {
  it('defaults to Varnish (max_esi_depth 5, esi_include_onerror off); esiMaxDepth and esiIncludeOnError are read and checked', () => {
    expect(toConfig({ backend: ['http://127.0.0.1:1'] }).esi).toEqual({ maxDepth: 5, includeOnError: false });
    expect(toConfig({ backend: ['http://127.0.0.1:1'] }, { esiMaxDepth: 0, esiIncludeOnError: true }).esi).toEqual({ maxDepth: 0, includeOnError: true });
    expect(() => toConfig({ backend: ['http://127.0.0.1:1'] }, { esiMaxDepth: -1 })).toThrow(/esiMaxDepth: "-1" is not a whole number/);
  });

  it('reach the proxy `sluice proxy` builds: a self-including page stops at esiMaxDepth', async ({ onTestFinished }) => {
    const origin = await startScriptedOrigin((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end('<x><esi:include src="/self"/></x>');
    });
    onTestFinished(() => origin.close());
    const hooks = {
      upstreamResponseFilter(beresp: { doEsi: boolean }) {
        beresp.doEsi = true;
        return undefined;
      },
    };
    const px = compose(toConfig({ backend: [origin.url], quiet: true }, { esiMaxDepth: 2, hooks }));
    onTestFinished(() => px.close());
    const { port } = await px.proxy.listen(0, '127.0.0.1');
    const r = await request(`http://127.0.0.1:${port}/self`);
    expect(await r.body.text()).toBe('<x><x><x></x></x></x>');
  });
});
