import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { startScriptedOrigin } from '@sluice/fixtures';
import { MemorySink, TxLog } from '../txlog/txlog.js';
import { startProxy, until, useCleanup } from '../test-support/harness.js';

/**
 * Session 10: `proxy.close()` (a second SIGTERM, `running.close()`) cuts the client connections, and only resolves once
 * the requests still being handled have ended, so their log groups are complete before the CLI closes the log file
 * (the CLI's "SIGTERM twice" test lost the cut request's group under load).
 */
const track = useCleanup();

describe('proxy.close waits for the requests it cut', () => {
  it('a request parked in an async requestFilter when close() is called is in the log, with its fetch, once close() resolves', async () => {
    const origin = track(
      await startScriptedOrigin((_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '2' });
        res.end('ok');
      }),
    );
    const sink = new MemorySink();
    let parked = 0;
    const px = track(
      await startProxy(origin.url, {
        txlog: new TxLog([sink]),
        hooks: {
          requestFilter: async (req) => {
            if (req.url !== '/parked') return undefined;
            parked++;
            await new Promise((r) => setTimeout(r, 300));
            return undefined;
          },
        },
      }),
    );
    const c = net.connect(px.port, '127.0.0.1');
    c.on('error', () => undefined);
    c.write('GET /parked HTTP/1.1\r\nHost: t\r\n\r\n');
    await until(() => parked === 1);
    await px.proxy.close();
    const urls = sink.groups.map((g) => g.records.find((r) => r.tag === 'ReqURL')?.value);
    expect(urls).toContain('/parked');
  });
});
