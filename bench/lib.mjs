// Helpers shared by bench scenarios: child processes for origins and proxies, percentiles, machine notes.
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'packages/cli/bin/run.js');
const children = new Set();

/** Runs `sluice <args>` in its own process; resolves with the URL it prints once listening. */
export function startSluice(args) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(p);
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => {
      out += String(d);
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
      if (m) resolve({ url: m[1], stop: () => stop(p) });
    });
    p.stderr.on('data', (d) => (err += String(d)));
    p.on('exit', (code) => {
      children.delete(p);
      reject(new Error(`sluice ${args.join(' ')} exited ${code}: ${err}`));
    });
  });
}

function stop(p) {
  return new Promise((resolve) => {
    if (p.exitCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
  });
}

export async function stopAll() {
  await Promise.all([...children].map((p) => stop(p)));
}

export function percentiles(values) {
  const s = [...values].sort((a, b) => a - b);
  const at = (q) => (s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(q * s.length))]);
  const r = (v) => Math.round(v * 100) / 100;
  return { p50: r(at(0.5)), p90: r(at(0.9)), p99: r(at(0.99)), n: s.length };
}

export function machine() {
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

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
