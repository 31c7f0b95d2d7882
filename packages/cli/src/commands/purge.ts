import { Args, Command, Flags } from '@oclif/core';
import { adminCall, adminTarget } from '../admin-client.js';
import { CliError } from '../errors.js';
import { adminFlags } from './stats.js';

export default class PurgeCommand extends Command {
  static override summary = 'Remove cached objects from a running proxy: by URL, or by Surrogate-Key / xkey tag.';
  static override description = 'A URL purge removes every variant stored for that URL and Host (the key the cacheKey policy gives it). A tag purge removes every object whose origin response carried one of the tags in Surrogate-Key or xkey.';
  static override examples = [
    '<%= config.bin %> purge http://www.example.com/products/42 --token s3cret-token',
    '<%= config.bin %> purge /products/42 --host www.example.com',
    '<%= config.bin %> purge --tag product-42 --tag catalog',
  ];
  static override enableJsonFlag = true;
  static override args = { url: Args.string({ description: 'URL (absolute, or a path with --host) to purge' }) };
  static override flags = {
    ...adminFlags,
    host: Flags.string({ summary: 'Host of the URL when it is given as a path. e.g. --host www.example.com' }),
    tag: Flags.string({ summary: 'Purge by tag instead (repeatable). e.g. --tag product-42', multiple: true }),
  };

  async run(): Promise<{ purged: number }> {
    const { args, flags } = await this.parse(PurgeCommand);
    const t = adminTarget(flags);
    let body: unknown;
    if (flags.tag !== undefined && flags.tag.length > 0) {
      if (args.url !== undefined) throw new CliError('CLI_ERR_FLAG_INVALID', 'give a URL or --tag, not both');
      body = { tags: flags.tag };
    } else if (args.url !== undefined) {
      if (/^https?:\/\//.test(args.url)) {
        const u = new URL(args.url);
        body = { url: `${u.pathname}${u.search}`, host: flags.host ?? u.host };
      } else if (args.url.startsWith('/')) {
        body = { url: args.url, host: flags.host ?? '' };
      } else {
        throw new CliError('CLI_ERR_FLAG_INVALID', `"${args.url}" is neither an http(s) URL nor a path starting with /`);
      }
    } else {
      throw new CliError('CLI_ERR_FLAG_INVALID', 'nothing to purge: give a URL or --tag TAG');
    }
    const r = (await adminCall(t, 'POST', '/purge', body)) as { purged: number };
    this.log(`purged ${r.purged} object${r.purged === 1 ? '' : 's'}`);
    if (r.purged === 0 && args.url !== undefined && flags.host === undefined && args.url.startsWith('/')) {
      // The key is Host + URL (the builtin cacheKey), and clients always send a Host: a bare path matches nothing.
      process.stderr.write(`sluice: nothing matched: the cache key includes the Host, and none was given; purge http://HOST${args.url} or add --host HOST (the Host clients send)\n`);
    }
    return r;
  }
}
