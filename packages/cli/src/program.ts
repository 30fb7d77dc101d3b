import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { isDatabaseUnavailable, reports, sqlState } from '@metergate/db';
import { registerCredits } from './commands/credits.js';
import { registerKeys } from './commands/keys.js';
import { registerLedger } from './commands/ledger.js';
import { registerMigrate } from './commands/migrate.js';
import { registerPricing } from './commands/pricing.js';
import { registerRequests } from './commands/requests.js';
import { registerResolve } from './commands/resolve.js';
import { registerPrices } from './commands/prices.js';
import { registerUsage } from './commands/usage.js';
import { registerUsers } from './commands/users.js';
import { registerVerify } from './commands/verify.js';
import { registerLimits } from './commands/limits.js';
import { registerWebhooks } from './commands/webhooks.js';
import { DatabaseCommandError } from './db.js';
import { CliError, ExitCode } from './errors.js';

const HELP_AFTER = `
Design: the CLI talks to the database directly (DATABASE_URL, the proxy's own database) through
the same @metergate/db SQL functions the proxy uses, so every query has one source of truth and
no proxy needs to be running: \`migrate\` has to reach the database before any proxy can start,
and \`verify\` must read the books even when every replica is down.

Money is printed as USD decimal strings with all 9 stored digits; amounts are typed as decimal
strings (at most 9 decimals) and parsed exactly, never through a float.

Exit codes:
  0  ok
  1  books check found a breach, or the operation failed (database unreachable, SQL error)
  2  usage error: bad flags or values, or DATABASE_URL unset/invalid (nothing was done)
  3  not found (unknown user or key)
  4  conflict (the user already exists)
`;

export function buildProgram(): Command {
  const program = new Command('metergate')
    .description('Metergate operator CLI: users, keys, credits, ledger, usage, pricing, prices, requests, settle-request, void-request, verify, migrate')
    .version(packageVersion())
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', HELP_AFTER)
    .exitOverride();
  for (const register of [registerUsers, registerKeys, registerCredits, registerLedger, registerUsage, registerPricing,
    registerRequests, registerResolve, registerPrices, registerVerify, registerMigrate, registerLimits, registerWebhooks]) {
    register(program);
  }
  // Subcommands inherit exitOverride only when set before they are added: set it on each.
  const all = (cmd: Command): Command[] => [cmd, ...cmd.commands.flatMap(all)];
  for (const cmd of all(program)) cmd.exitOverride().showHelpAfterError('(add --help for usage)');
  return program;
}

/** Runs one command line; returns the exit code (never calls process.exit, so output drains). */
export async function run(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return ExitCode.ok;
  } catch (error) {
    return report(error);
  }
}

function report(error: unknown): number {
  // Commander has already printed its message (unknown option, bad value, missing argument).
  if (error instanceof CommanderError) return error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
  if (error instanceof CliError) {
    fail(error.message);
    return error.exitCode;
  }
  if (error instanceof DatabaseCommandError && error.cause instanceof reports.ReportQueryError) {
    fail(`--${error.cause.param}: ${error.cause.message}`);
    return ExitCode.usage;
  }
  if (error instanceof DatabaseCommandError) {
    fail(databaseMessage(error));
    return ExitCode.failure;
  }
  fail(error instanceof Error ? error.message : String(error));
  return ExitCode.failure;
}

function databaseMessage(error: DatabaseCommandError): string {
  const state = sqlState(error.cause);
  if (state === '42P01' || state === '42703') {
    return `the database at ${error.databaseLabel} is not migrated to this version (${error.message}): run \`metergate migrate\``;
  }
  // Only errors that carry a code (SQLSTATE or socket) are classified: a code-less error may be
  // anything, so it is reported as it is rather than blamed on the network.
  const code = (error.cause as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && isDatabaseUnavailable(error.cause)) {
    return `cannot reach the database at ${error.databaseLabel}: ${error.message}`;
  }
  if (state !== undefined) return `database error at ${error.databaseLabel} (SQLSTATE ${state}): ${error.message}`;
  return `${error.message} (database ${error.databaseLabel})`;
}

function fail(message: string): void {
  process.stderr.write(`metergate: error: ${message}\n`);
}

function packageVersion(): string {
  const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}
