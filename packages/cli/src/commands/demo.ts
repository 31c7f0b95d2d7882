import path from 'node:path';
import { Command } from '@oclif/core';
import { startFixtureOrigin } from '@sluice/fixtures';
import { loadConfigFile, toConfig } from '../config.js';
import { adminListenFlags, proxyFlags } from '../flags.js';
import { invocation } from '../invocation.js';
import { serve, untilSignal } from '../serve.js';

export default class DemoCommand extends Command {
  static override summary = 'Run the proxy in front of an embedded fixture origin, and print what to curl.';
  static override description = 'Starts the fixture origin (the one the tests use) on a free loopback port and the proxy on --listen in front of it. Takes the same settings flags as "proxy".';

  static override examples = ['<%= config.bin %> demo', '<%= config.bin %> demo --listen 127.0.0.1:7000 --storage 64MB', '<%= config.bin %> demo --admin-listen 127.0.0.1:6082   # also prints how to tail the log'];

  static override flags = { ...proxyFlags, ...adminListenFlags };

  async run(): Promise<{ url: string; origin: string }> {
    const { flags } = await this.parse(DemoCommand);
    const file = flags.config === undefined ? {} : await loadConfigFile(flags.config);
    const origin = await startFixtureOrigin({ record: 0 });
    const config = toConfig({ ...flags, backend: [origin.url] }, file);
    let running;
    try {
      running = await serve(config, (l) => process.stderr.write(`${l}\n`));
    } catch (e: unknown) {
      await origin.close();
      throw e;
    }
    const u = running.url;
    this.log(`Sluice demo: proxy ${u} in front of fixture origin ${origin.url}`);
    this.log('');
    this.log(`  curl -i ${u}/static/1k                  # a miss; run it again for a hit (see Cache-Status, Age)`);
    this.log(`  curl -N ${u}/chunked?delay=1000         # chunks arrive as the origin sends them, one per second`);
    this.log(`  curl -i ${u}/private                    # not stored: Cache-Status says why`);
    this.log(`  curl -i -H 'Cookie: a=1' ${u}/static/1k # passed, as Varnish's builtin VCL does`);
    this.log(`  curl -s ${origin.url}/stats               # what reached the origin`);
    if (running.adminUrl !== undefined) {
      // The demo is a loopback toy: its lines carry the token, generated or given, so they run when pasted.
      const token = running.adminToken ?? config.adminToken ?? '';
      // `sluice` when it is on PATH (README: npm link), else `node /path/to/bin/run.js`: either runs as printed.
      const sluice = invocation(path.join(this.config.root, 'bin', 'run.js'));
      this.log(`  ${sluice} log --admin ${running.adminUrl} --token ${token}     # the transaction log, as varnishlog`);
      this.log(`  ${sluice} stats --admin ${running.adminUrl} --token ${token}   # the counters, as varnishstat`);
    }
    this.log('');
    this.log('Ctrl-C to stop.');
    await untilSignal();
    await running.close();
    await origin.close();
    return { url: u, origin: origin.url };
  }
}
