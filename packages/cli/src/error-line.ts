/**
 * How bin/run.js reports a failure: the whole message as one line (oclif's multi-line messages folded into one
 * paragraph, its "See more help" turned into the command to run) and the exit status: the error's own (`oclif.exit`,
 * which CliError sets from its code and oclif's parse errors set to 2), else 1.
 */
export interface ErrorLine {
  line: string;
  exit: number;
}

const HELP_HINT = /^See more help with --help$/;
const BANNER = /^The following errors? occurred:$/;
/** oclif's note on a missing argument when multiple-value flags could have eaten it. */
const GREEDY_NOTE = /^(Note: --.* allows? multiple values\.|Alternatively, you can use "--" )/;
/** oclif lists a missing argument as its name, two or more spaces, its description. */
const ARG_LINE = /^(\S+)\s{2,}(\S.*)$/;

export function errorLine(err: unknown, ctx: { command: string | undefined; invocation: string }): ErrorLine {
  const o = (err as { oclif?: { exit?: unknown } } | null)?.oclif;
  const exit = typeof o?.exit === 'number' ? o.exit : 1;
  const raw = err instanceof Error ? err.message : String(err);
  const noGreedy = !hasGreedyMultipleFlag(err);
  const lines = raw
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !BANNER.test(l) && !(noGreedy && GREEDY_NOTE.test(l)));
  const hint = lines.some((l) => HELP_HINT.test(l)) && ctx.command !== undefined ? `See ${ctx.invocation} ${ctx.command} --help.` : undefined;
  const text = fold(lines.filter((l) => !HELP_HINT.test(l)));
  const line = (hint === undefined ? text : `${sentence(text)} ${hint}`).replace(/^Error:\s*/, '');
  return { line: line === '' ? 'failed' : line, exit };
}

/**
 * Whether the failed command has a flag that takes several values after one flag name. oclif adds its note ("--target
 * allows multiple values ...") for every multiple flag, also those declared `multipleNonGreedy`, where it is wrong.
 */
function hasGreedyMultipleFlag(err: unknown): boolean {
  const flags = (err as { parse?: { input?: { flags?: Record<string, { multiple?: boolean; multipleNonGreedy?: boolean }> } } } | null)?.parse?.input?.flags;
  if (flags === undefined) return true;
  return Object.values(flags).some((f) => f.multiple === true && f.multipleNonGreedy !== true);
}

/** Folds oclif's message lines into one paragraph, rewording the few layouts it uses. */
function fold(lines: string[]): string {
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i] as string;
    const parsing = /^Parsing (--\S+)$/.exec(l);
    const next = lines[i + 1];
    if (parsing !== null && next !== undefined) {
      // "Parsing --max-ranges" + "Expected an integer but received: abc"
      out.push(`${parsing[1]}: ${next}`);
      i++;
    } else if (/^Missing \d+ required args?:$/.test(l)) {
      // "Missing 1 required arg:" + "expr  ban expression" per argument
      const args: string[] = [];
      for (let m = ARG_LINE.exec(lines[i + 1] ?? ''); m !== null; m = ARG_LINE.exec(lines[i + 1] ?? '')) {
        args.push(`${m[1] ?? ''} (${m[2] ?? ''})`);
        i++;
      }
      out.push(`${l} ${args.join(', ')}`.trim());
    } else {
      out.push(l.replace(/^Missing required flag (\w[\w-]*)$/, 'Missing required flag --$1'));
    }
  }
  return out.reduce((acc, l) => (acc === '' ? l : `${/[.:;!?]$/.test(acc) ? acc : `${acc}.`} ${l}`), '');
}

function sentence(s: string): string {
  return /[.!?]$/.test(s) ? s : `${s}.`;
}
