import { accessSync, constants } from 'node:fs';
import path from 'node:path';

/**
 * How a shell runs this CLI, for the commands Sluice prints (the demo's `sluice log ...`, error hints): `sluice` when
 * a `sluice` is on PATH (after `npm link`, or inside pnpm scripts), else `node /abs/path/bin/run.js`, which runs from
 * any directory. Either way the printed line runs as printed.
 */
export function invocation(runJs: string, pathVar: string = process.env['PATH'] ?? ''): string {
  return isOnPath('sluice', pathVar) ? 'sluice' : `node ${shellQuote(runJs)}`;
}

function isOnPath(name: string, pathVar: string): boolean {
  for (const dir of pathVar.split(path.delimiter)) {
    if (dir === '') continue;
    try {
      accessSync(path.join(dir, name), constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/** Quotes a word for a POSIX shell when it needs it. */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
