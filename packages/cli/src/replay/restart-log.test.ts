import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createProxy, formatVarnishlog, MemorySink, TxLog, type Transaction } from '@sluice/core';
import { createOriginClient } from '@sluice/origin-client';
import { startScriptedOrigin } from '@sluice/fixtures';
import { parseTrace } from './trace.js';

/**
 * Issue 14: a restart in Sluice's own log reads as Varnish writes one (`Link req N restart`, the next request at the
 * same level), so `sluice replay` of that log follows the chain to the request the client got: its status and outcome.
 */
describe('a restart in the transaction log', () => {
  it('is replayed as one request with the status and outcome of the last request of the chain', async () => {
    const origin = await startScriptedOrigin((req, res) => {
      const found = req.url === '/fallback';
      res.writeHead(found ? 200 : 404, { 'cache-control': 'max-age=60' });
      res.end(found ? 'fallback' : 'missing');
    });
    const upstream = createOriginClient({ backends: [{ url: origin.url }] });
    const sink = new MemorySink();
    const proxy = createProxy({
      upstream,
      txlog: new TxLog([sink]),
      hooks: {
        responseFilter(resp, req) {
          if (resp.status !== 404 || req.restarts > 0) return undefined;
          req.url = '/fallback';
          return 'restart';
        },
      },
    });
    try {
      const addr = await proxy.listen(0);
      const r = await request(`http://127.0.0.1:${addr.port}/missing`, { headers: { host: 't' } });
      expect([r.statusCode, await r.body.text()]).toEqual([200, 'fallback']);
      for (let i = 0; i < 100 && sink.groups.length === 0; i++) await new Promise((res) => setImmediate(res));
      const text = formatVarnishlog(sink.groups[0] as Transaction);
      expect(text).toMatch(/^-   Link +req \d+ restart$/m);
      expect(text).toMatch(/^\*   << Request  >> \d+ *\n-   Begin +req \d+ restart$/m);
      const trace = parseTrace(Buffer.from(text), 'sluice.log');
      expect(trace.requests).toHaveLength(1);
      expect(trace.requests[0]).toMatchObject({ url: '/missing', recorded: { status: 200, outcome: 'miss' } });
      expect(trace.requests[0]?.notes.join(' ')).toMatch(/restarted into request \d+/);
    } finally {
      await proxy.close();
      await upstream.destroy();
      await origin.close();
    }
  });
});
