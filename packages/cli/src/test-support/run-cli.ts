import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The CLI entry point, run as a real child process by the tests. */
export const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/run.js');

/** The repository root. */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

/**
 * The environment the CLI runs in unless a test gives its own: the test's, with the workspace's node_modules/.bin
 * first on PATH (as `pnpm test` has it), so `sluice` is a command there however the tests were started.
 */
export const CLI_ENV: NodeJS.ProcessEnv = { ...process.env, PATH: [path.join(REPO, 'node_modules/.bin'), process.env['PATH'] ?? ''].join(path.delimiter) };

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `sluice <args>` to completion; resolves with its exit code and output. `env` replaces the environment. */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? CLI_ENV });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += String(d)));
    p.stderr.on('data', (d) => (stderr += String(d)));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Starts a long-running `sluice <args>` (proxy, demo, origin); resolves once stdout matches `ready`, with the match
 * and everything printed so far. The process is stopped (SIGTERM) by the `onEnd` the caller passes.
 */
export function startCli(
  args: string[],
  ready: RegExp,
  onEnd: (fn: () => Promise<void>) => void,
  opts: { env?: NodeJS.ProcessEnv } = {},
): Promise<{ match: RegExpExecArray; stdout: string }> {
  const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? CLI_ENV });
  onEnd(async () => {
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await exited;
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => {
      out += String(d);
      const m = ready.exec(out);
      if (m !== null) resolve({ match: m, stdout: out });
    });
    p.stderr.on('data', (d) => (err += String(d)));
    p.on('exit', (code) => reject(new Error(`sluice ${args.join(' ')} exited ${String(code)}: ${err}`)));
  });
}
