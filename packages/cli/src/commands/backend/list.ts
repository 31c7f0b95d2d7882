import { Command } from '@oclif/core';
import { adminCall, adminTarget } from '../../admin-client.js';
import { formatTable, terminalWidth } from '../../table.js';
import { adminFlags } from '../stats.js';

/** One backend as GET /backends gives it. */
export interface BackendRow {
  name: string;
  url: string;
  admin: 'auto' | 'sick' | 'healthy';
  probe: 'healthy' | 'sick' | 'none';
  healthy: boolean;
  active: number;
}

export default class BackendListCommand extends Command {
  static override summary = "List a running proxy's backends with their health, as varnishadm backend.list.";
  static override description =
    'Admin is the operator\'s setting (auto follows the probe; sick and healthy are forced with `sluice backend set-health`), Probe what the health probe says (none without a probe), Health what the directors use.';
  static override examples = ['<%= config.bin %> backend list --token s3cret-token', '<%= config.bin %> backend list --json'];
  static override enableJsonFlag = true;
  static override flags = { ...adminFlags };

  async run(): Promise<BackendRow[]> {
    const { flags } = await this.parse(BackendListCommand);
    const rows = (await adminCall(adminTarget(flags), 'GET', '/backends')) as BackendRow[];
    this.log(formatBackends(rows, terminalWidth()));
    return rows;
  }
}

/** The backend.list table: name, admin, probe, health, requests in flight, URL. */
export function formatBackends(rows: readonly BackendRow[], width?: number): string {
  const columns = [
    { header: 'Backend name' },
    { header: 'Admin' },
    { header: 'Probe' },
    { header: 'Health' },
    { header: 'Active', align: 'right' as const },
    { header: 'URL', shrink: true, min: 12 },
  ];
  const cells = rows.map((b) => [b.name, b.admin, b.probe, b.healthy ? 'healthy' : 'sick', String(b.active), b.url]);
  return formatTable(columns, cells, { width }).join('\n');
}
