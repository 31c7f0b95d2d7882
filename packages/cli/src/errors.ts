/**
 * Errors of @sluice/cli. A CliError's message is one line naming the problem; bin/run.js prints it and exits with
 * the code's status: 2 when the command line is wrong (a flag, an argument, or the file one names), 1 when the work
 * failed (an address in use, the admin API unreachable or refusing). `sluice replay` sets exit 1 itself when requests
 * failed, after its report (see commands/replay.ts).
 */
export type CliErrorCode =
  | 'CLI_ERR_CONFIG_INVALID'
  | 'CLI_ERR_FLAG_INVALID'
  | 'CLI_ERR_CONFIG_LOAD'
  | 'CLI_ERR_COMMAND_UNKNOWN'
  | 'CLI_ERR_LISTEN'
  | 'CLI_ERR_ADMIN'
  | 'CLI_ERR_TRACE';

/** Exit status per code: 2 usage, 1 runtime. */
const EXIT: Record<CliErrorCode, 1 | 2> = {
  CLI_ERR_CONFIG_INVALID: 2,
  CLI_ERR_FLAG_INVALID: 2,
  CLI_ERR_CONFIG_LOAD: 2,
  CLI_ERR_COMMAND_UNKNOWN: 2,
  CLI_ERR_TRACE: 2,
  CLI_ERR_LISTEN: 1,
  CLI_ERR_ADMIN: 1,
};

export class CliError extends Error {
  override readonly name = 'CliError';
  readonly code: CliErrorCode;
  readonly source = 'internal' as const;
  readonly retry = 'no' as const;
  /** oclif (and bin/run.js) read the exit status here. */
  readonly oclif: { exit: 1 | 2 };

  constructor(code: CliErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.oclif = { exit: EXIT[code] };
  }
}
