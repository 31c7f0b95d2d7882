import { Command, Flags } from '@oclif/core';
import { startFastOrigin, startFixtureOrigin, startSampleOrigin } from '@sluice/fixtures';
import { parseListen } from '../config.js';
import { listenError, untilSignal } from '../serve.js';

export default class OriginCommand extends Command {
  static override summary = 'Run the fixture origin on its own (static, chunked, rate-limited and failing routes).';
  static override description = 'Routes: /static/<size>, /chunked?chunks=5&size=64&delay=200, /rate/<size>?bps=N, /fail?after=N&cl=1, /private, /no-store, /set-cookie, /vary?on=HEADER, /stats, /esi/page (an ESI template including /esi/frag), /esi/frag.';

  static override examples = ['<%= config.bin %> origin --listen 127.0.0.1:8080', '<%= config.bin %> origin --fast --listen 127.0.0.1:8081', '<%= config.bin %> origin --sample --listen 127.0.0.1:20100'];

  static override flags = {
    fast: Flags.boolean({
      summary: 'Serve only /static/<size> from pre-built responses on a bare socket (throughput baseline). e.g. --fast',
    }),
    sample: Flags.boolean({
      summary: 'Serve the endpoints of the shared varnishlog sample (/news, /api/items/N, /api/popular, /feed, /broken, ...), to replay its traces. e.g. --sample',
      exclusive: ['fast'],
    }),
    listen: Flags.string({ summary: 'Address to serve on. e.g. --listen 127.0.0.1:9000', default: '127.0.0.1:8080', helpValue: 'HOST:PORT' }),
  };

  async run(): Promise<{ url: string }> {
    const { flags } = await this.parse(OriginCommand);
    const { host, port } = parseListen(flags.listen);
    const start = flags.fast ? startFastOrigin : flags.sample ? startSampleOrigin : startFixtureOrigin;
    let origin: { url: string; close(): Promise<void> };
    try {
      origin = await start({ host, port, record: 0 });
    } catch (e: unknown) {
      throw listenError('--listen', host, port, e);
    }
    this.log(`sluice origin: listening on ${origin.url}`);
    await untilSignal();
    await origin.close();
    return { url: origin.url };
  }
}
