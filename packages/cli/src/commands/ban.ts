import { Args, Command } from '@oclif/core';
import { adminCall, adminTarget } from '../admin-client.js';
import { adminFlags } from './stats.js';

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
  ];
  static override enableJsonFlag = true;
  static override args = { expr: Args.string({ description: 'ban expression', required: true }) };
  static override flags = { ...adminFlags };

  async run(): Promise<{ id: number; expr: string }> {
    const { args, flags } = await this.parse(BanCommand);
    const r = (await adminCall(adminTarget(flags), 'POST', '/ban', { expr: args.expr })) as { id: number; expr: string };
    this.log(`ban ${r.id} added: ${r.expr}`);
    return r;
  }
}
