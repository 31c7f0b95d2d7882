import path from 'node:path';
import { Args, Command, Flags } from '@oclif/core';
import { adminCall, adminTarget } from '../admin-client.js';
import { adminFlags } from './stats.js';
import { CliError } from '../errors.js';
import { invocation } from '../invocation.js';

export default class BanCommand extends Command {
  static override summary = 'Ban cached objects matching an expression (Varnish ban syntax).';
  static override description = [
    'Fields: obj.status, obj.http.NAME, req.url, req.http.host. Operators: == != ~ (regex) !~, joined with &&. Values bare or in double quotes.',
    'A ban applies to objects stored before it: each is tested when next looked up, and a background sweeper tests the rest a slice at a time.',
  ].join('\n\n');
  static override examples = [
    '<%= config.bin %> ban "req.url ~ ^/products/" --token s3cret-token',
    '<%= config.bin %> ban \'obj.http.content-type ~ "text/html" && req.http.host == www.example.com\'',
    '<%= config.bin %> ban "obj.status == 404"',
    '<%= config.bin %> ban --list                       # the bans in force, oldest first (varnishadm ban.list)',
  ];
  static override enableJsonFlag = true;
  static override args = { expr: Args.string({ description: 'ban expression (not with --list)' }) };
  static override flags = {
    ...adminFlags,
    list: Flags.boolean({ summary: 'List the bans in force (id, time added, expression), as varnishadm ban.list.' }),
  };

  async run(): Promise<{ id: number; expr: string } | Array<{ id: number; expr: string; created: string }>> {
    const { args, flags } = await this.parse(BanCommand);
    if (flags.list) {
      if (args.expr !== undefined) throw new CliError('CLI_ERR_FLAG_INVALID', 'ban --list takes no expression');
      const bans = (await adminCall(adminTarget(flags), 'GET', '/bans')) as Array<{ id: number; expr: string; created: string }>;
      if (bans.length === 0) this.log('no bans in force');
      for (const b of bans) this.log(`${String(b.id).padStart(5)}  ${b.created}  ${b.expr}`);
      return bans;
    }
    if (args.expr === undefined) {
      const sluice = invocation(path.join(this.config.root, 'bin', 'run.js'));
      throw new CliError('CLI_ERR_FLAG_INVALID', `Missing 1 required arg: expr (ban expression). See ${sluice} ban --help (or give --list).`);
    }
    const r = (await adminCall(adminTarget(flags), 'POST', '/ban', { expr: args.expr })) as { id: number; expr: string };
    this.log(`ban ${r.id} added: ${r.expr}`);
    return r;
  }
}
