import { InvalidArgumentError, type Command } from 'commander';
import { verify } from '@metergate/db';
import { ConfigError, loadConfig } from '@metergate/server/config';
import { formatReport, staleInFlightMs } from '@metergate/server/verify-report';
import { proxyTimingEnv } from '../config.js';
import { withDatabase } from '../db.js';
import { CliError, ExitCode, usage } from '../errors.js';
import { printJson } from '../output.js';
import { limit } from '../parse.js';

const SAMPLE_MAX = 1000;

export function registerVerify(program: Command): void {
  program.command('verify')
    .description('check the books, read-only, in one snapshot (exit 1 on any breach): balance = Σ ledger = credits − usage for every user; '
      + 'every settled request has exactly one usage entry and every usage entry a settled request; no request in_flight past its lease')
    .option('--stale-after-ms <ms>', 'an in_flight request whose replica is silent this long is a breach (default: from the proxy\'s '
      + 'REPLICA_LEASE_MS and RECONCILE_INTERVAL_MS, read from the environment as the proxy reads them)', milliseconds)
    .option('--sample <n>', `breaches listed per kind (counts are exact; max ${SAMPLE_MAX})`, limit(SAMPLE_MAX), 20)
    .option('--rollups', 'also compare every usage rollup with sums over the ledger (a full scan of the ledger per rollup: slow on a large ledger)')
    .option('--json', 'machine output: the full report')
    .action(verifyCommand);
}

async function verifyCommand(opts: { staleAfterMs?: number; sample: number; json?: boolean; rollups?: boolean }): Promise<void> {
  const staleMs = opts.staleAfterMs ?? proxyStaleMs();
  const report = await withDatabase(({ pool }) => verify.verifyBooks(pool, { staleInFlightMs: staleMs, sampleMax: opts.sample, rollups: opts.rollups === true }));
  // The same summary as `npm run verify` prints.
  if (opts.json === true) printJson(report);
  else process.stdout.write(`${formatReport(report)}\n`);
  if (!report.ok) {
    const total = Object.values(report.breaches).reduce((sum, kind) => sum + kind.count, 0);
    throw new CliError(ExitCode.failure, `books check FAILED: ${total} breach${total === 1 ? '' : 'es'}`);
  }
}

/** The proxy's own rule and defaults (its config module, given only the timing variables). */
function proxyStaleMs(): number {
  try {
    return staleInFlightMs(loadConfig(proxyTimingEnv()));
  } catch (error) {
    if (error instanceof ConfigError) throw usage(error.message);
    throw error;
  }
}

function milliseconds(text: string): number {
  const value = /^\d{1,10}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError(`expected a positive whole number of milliseconds; got ${JSON.stringify(text)}`);
  return value;
}
