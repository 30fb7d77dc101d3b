import { Option, type Command } from 'commander';
import type { LedgerKind, LedgerFilters } from '@metergate/db';
import { timestamp } from '../parse.js';

/** The ledger filters shared by `ledger` and `usage`, with the admin API's meaning. */
export function addTimeRange(cmd: Command): Command {
  return cmd
    .option('--since <time>', 'from this time, inclusive (RFC 3339, or a date = midnight UTC)', timestamp)
    .option('--until <time>', 'up to this time, exclusive (RFC 3339, or a date)', timestamp);
}

export function addLedgerFilters(cmd: Command): Command {
  addTimeRange(cmd.option('--user <id>', 'only this user'));
  return cmd
    .addOption(new Option('--kind <kind>', 'only this kind of entry').choices(['grant', 'usage', 'adjustment']))
    .option('--model <model>', 'only usage of this model');
}

export interface FilterOptions { user?: string; kind?: LedgerKind; model?: string; since?: Date; until?: Date }

export function ledgerFilters(opts: FilterOptions): LedgerFilters {
  return { userId: opts.user ?? null, kind: opts.kind ?? null, model: opts.model ?? null, since: opts.since ?? null, until: opts.until ?? null };
}
