import { CodedError } from '@metergate/db';

/**
 * Exit codes scripts can rely on (documented in `metergate --help` and the README).
 * Commander's own parse errors (unknown option, bad choice, missing argument) are usage errors.
 */
export const ExitCode = Object.freeze({
  ok: 0,
  /** The books check found a breach, or the operation failed (database unreachable, SQL error). */
  failure: 1,
  /** Bad flags or values, or missing configuration: nothing was done. */
  usage: 2,
  notFound: 3,
  conflict: 4,
});

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** An expected outcome with its exit code; main prints the message and exits with the code. */
export class CliError extends CodedError<'cli_failed'> {
  constructor(readonly exitCode: ExitCodeValue, message: string, options?: { cause?: unknown }) {
    super('cli_failed', message, options);
  }
}

export function notFound(message: string): CliError {
  return new CliError(ExitCode.notFound, message);
}

export function conflict(message: string): CliError {
  return new CliError(ExitCode.conflict, message);
}

export function usage(message: string): CliError {
  return new CliError(ExitCode.usage, message);
}
