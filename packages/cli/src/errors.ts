/**
 * Errors of @sluice/cli. A CliError's message is one line naming the problem; bin/run.js prints it and exits 2.
 */
export type CliErrorCode = 'CLI_ERR_CONFIG_INVALID' | 'CLI_ERR_FLAG_INVALID' | 'CLI_ERR_CONFIG_LOAD' | 'CLI_ERR_LISTEN' | 'CLI_ERR_ADMIN' | 'CLI_ERR_TRACE';

export class CliError extends Error {
  override readonly name = 'CliError';
  readonly code: CliErrorCode;
  readonly source = 'internal' as const;
  readonly retry = 'no' as const;
  /** oclif reads this for the exit code. */
  readonly oclif = { exit: 2 };

  constructor(code: CliErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
  }
}
