import { CliError } from './errors.js';

/** Edit distance (insert, delete, substitute, swap two neighbours), for "did you mean". */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  const at = (i: number, j: number): number => (d[i] as number[])[j] as number;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, at(i - 2, j - 2) + 1);
      (d[i] as number[])[j] = v;
    }
  }
  return at(a.length, b.length);
}

/** The known command closest to `id`, when it is close enough to be a typo (or `id` is its prefix). */
export function closestCommand(id: string, known: readonly string[]): string | undefined {
  let best: { id: string; dist: number } | undefined;
  for (const k of known) {
    const dist = k.startsWith(id) ? 0 : editDistance(id, k);
    if (best === undefined || dist < best.dist) best = { id: k, dist };
  }
  return best !== undefined && best.dist <= Math.max(2, Math.floor(id.length / 3)) ? best.id : undefined;
}

/** The error for `sluice <id>` when no command has that name (exit 2). */
export function unknownCommand(id: string, known: readonly string[], invocation: string): CliError {
  // Commands under a topic are `backend:list` to oclif and `backend list` to the user.
  const guess = closestCommand(id.replace(/ /g, ':'), known)?.replace(/:/g, ' ');
  return new CliError('CLI_ERR_COMMAND_UNKNOWN', `unknown command "${id}"${guess === undefined ? '' : `; did you mean "${guess}"?`} (${invocation} help lists the commands)`);
}
