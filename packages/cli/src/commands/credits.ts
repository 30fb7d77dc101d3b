import type { Command } from 'commander';
import { formatNano, ledger, type LedgerEntry } from '@metergate/db';
import { withDatabase } from '../db.js';
import { notFound } from '../errors.js';
import { entryJson } from '../json.js';
import { printJson, printRecord } from '../output.js';
import { nonEmpty, nonZeroAmountNano, positiveAmountNano } from '../parse.js';

export function registerCredits(program: Command): void {
  const cmd = program.command('credits').description('grant or adjust credit (each a ledger entry; balance updated in the same statement)');
  cmd.command('grant')
    .description('add credit to a user: a positive "grant" ledger entry')
    .argument('<user>', 'user id', nonEmpty('user id'))
    .argument('<usd>', 'amount in USD, a decimal such as 5.00 (at most 9 decimals)', positiveAmountNano)
    .option('--note <text>', 'note kept on the ledger entry')
    .option('--json', 'machine output (the ledger entry)')
    .action((userId: string, amount: bigint, opts: CreditOptions) => credit(userId, 'grant', amount, opts));
  cmd.command('adjust')
    .description('correct a balance either way: an "adjustment" ledger entry (-1.50 takes 1.50 USD away)')
    .argument('<user>', 'user id', nonEmpty('user id'))
    .argument('<usd>', 'signed amount in USD, such as 2.5 or -1.50 (at most 9 decimals)', nonZeroAmountNano)
    .option('--note <text>', 'why (kept on the ledger entry)')
    .option('--json', 'machine output (the ledger entry)')
    .action((userId: string, amount: bigint, opts: CreditOptions) => credit(userId, 'adjustment', amount, opts));
}

interface CreditOptions { note?: string; json?: boolean }

async function credit(userId: string, kind: 'grant' | 'adjustment', amountNano: bigint, opts: CreditOptions): Promise<void> {
  const entry: LedgerEntry | null = await withDatabase(({ pool }) =>
    ledger.appendCredit(pool, { userId, kind, amountNano, note: opts.note ?? null }));
  if (entry === null) throw notFound(`no user ${userId}`);
  if (opts.json === true) return printJson(entryJson(entry));
  printRecord({ entry: entry.id, user: entry.userId, kind: entry.kind, amount_usd: formatNano(entry.amountNano), balance_usd: formatNano(entry.balanceAfterNano) });
}
