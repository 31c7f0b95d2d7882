import { Args, Command } from '@oclif/core';
import { adminCall, adminTarget } from '../../admin-client.js';
import { adminFlags } from '../stats.js';
import { formatBackends, type BackendRow } from './list.js';

export default class BackendSetHealthCommand extends Command {
  static override summary = 'Mark a backend sick or healthy by hand, or give it back to its probe (auto), as varnishadm backend.set_health.';
  static override description =
    'sick: no director sends it requests (with every backend sick, requests get 503 at once); healthy: used whatever its probe says; auto: the probe decides again (healthy when there is no probe). The setting lasts until changed or the proxy restarts.';
  static override examples = [
    '<%= config.bin %> backend set-health app1 sick      # drain it before maintenance',
    '<%= config.bin %> backend set-health app1 auto      # back to its probe',
  ];
  static override enableJsonFlag = true;
  static override args = {
    name: Args.string({ description: 'backend name (as `sluice backend list` shows it)', required: true }),
    health: Args.string({ description: 'sick, healthy or auto', required: true, options: ['sick', 'healthy', 'auto'] }),
  };
  static override flags = { ...adminFlags };

  async run(): Promise<BackendRow> {
    const { args, flags } = await this.parse(BackendSetHealthCommand);
    const row = (await adminCall(adminTarget(flags), 'POST', '/backends/health', { name: args.name, health: args.health })) as BackendRow;
    this.log(formatBackends([row]));
    return row;
  }
}
