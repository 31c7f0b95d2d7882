import { spawn, type ChildProcess } from 'node:child_process';
import { percentiles as sharedPercentiles, type Percentiles } from '../percentiles.js';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Child processes for benchmarks: origins and proxies each run as `sluice <command>` in a process of its own, so
 * the load generator (in the bench process) never shares a thread with what it measures.
 */
const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/run.js');

export interface Running {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

export class ProcessGroup {
  private readonly children = new Set<ChildProcess>();

  /**
   * Runs `sluice <args>`; resolves with the URL it prints once listening. `bin`: another build's `bin/run.js` (a
   * bench's before/after targets in one run), else this one's.
   */
  start(args: string[], bin = BIN): Promise<Running> {
    return new Promise((resolve, reject) => {
      const p = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      this.children.add(p);
      let out = '';
      let err = '';
      p.stdout.on('data', (d: Buffer) => {
        out += String(d);
        const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
        if (m?.[1] !== undefined) resolve({ url: m[1], pid: p.pid ?? 0, stop: () => stopChild(p) });
      });
      p.stderr.on('data', (d: Buffer) => (err += String(d)));
      p.on('exit', (code) => {
        this.children.delete(p);
        reject(new Error(`sluice ${args.join(' ')} exited ${String(code)}: ${err.trim()}`));
      });
    });
  }

  /** Takes a child started elsewhere (a peer such as nginx) so stopAll stops it too. */
  adopt(p: ChildProcess): void {
    this.children.add(p);
    p.once('exit', () => this.children.delete(p));
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.children].map((p) => stopChild(p)));
  }
}

function stopChild(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
  });
}

export type { Percentiles };

/** The sample's percentiles in ms, rounded to 0.01 ms (the shared helper, percentiles.ts). */
export function percentiles(values: readonly number[]): Percentiles {
  return sharedPercentiles(values, 2);
}

export interface MachineNote {
  cores: number;
  cpu: string;
  memGiB: number;
  node: string;
  platform: string;
  loadavgAtStart: number[];
}

export function machine(): MachineNote {
  const cpus = os.cpus();
  return {
    cores: cpus.length,
    cpu: cpus[0]?.model ?? 'unknown',
    memGiB: Math.round(os.totalmem() / 1024 ** 3),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    loadavgAtStart: os.loadavg().map((v) => Math.round(v * 100) / 100),
  };
}
