import { Option, type Command } from 'commander';
import { formatNano, type LedgerEntry, reports } from '@metergate/db';
import { withDatabase } from '../db.js';
import { usage } from '../errors.js';
import { entryJson } from '../json.js';
import { emit, note, renderJson, renderTable } from '../output.js';
import { ledgerCursor, limit } from '../parse.js';
import { exportLedgerCsv } from './ledger-csv.js';
import { addLedgerFilters, ledgerFilters, type FilterOptions } from './filters.js';

const LEDGER_PAGE_MAX = 10_000;
const LEDGER_PAGE_DEFAULT = 50;

export function registerLedger(program: Command): void {
  const cmd = program.command('ledger')
    .description('ledger entries, newest first: a page as a table (default) or --json, or the whole filtered range as --csv')
    .option('--limit <n>', `entries per page for table/--json (default ${LEDGER_PAGE_DEFAULT}, max ${LEDGER_PAGE_MAX}); with --csv, stop after n`, limit(LEDGER_PAGE_MAX))
    .option('--cursor <cursor>', 'next page: the next_cursor printed by the previous page', ledgerCursor)
    .addOption(new Option('--json', 'machine output: {"data": [entries], "next_cursor"} as the admin API answers').conflicts('csv'))
    .option('--csv', 'stream the whole filtered range as CSV (header row; columns = the --json entry fields); progress bar on a terminal')
    .option('--output <file>', 'write to this file instead of stdout');
  addLedgerFilters(cmd).action(ledgerCommand);
}

interface LedgerOptions extends FilterOptions { limit?: number; cursor?: string; json?: boolean; csv?: boolean; output?: string }

async function ledgerCommand(opts: LedgerOptions): Promise<void> {
  const filters = ledgerFilters(opts);
  if (opts.since !== undefined && opts.until !== undefined && opts.since >= opts.until) throw usage('--since must be before --until');
  if (opts.csv === true) {
    if (opts.cursor !== undefined) throw usage('--cursor pages the table and --json output; --csv exports the whole range');
    await withDatabase((db) => exportLedgerCsv(db.pool, filters, { limit: opts.limit ?? null, output: opts.output ?? null }));
    return;
  }
  const pageSize = opts.limit ?? LEDGER_PAGE_DEFAULT;
  // One row more than the page says whether another page exists (no empty last page), as the API does.
  const fetched = await withDatabase(({ pool }) => reports.queryLedger(pool, { ...filters, beforeId: opts.cursor ?? null, limit: pageSize + 1 }));
  const entries = fetched.slice(0, pageSize);
  const nextCursor = fetched.length > pageSize ? entries.at(-1)!.id : null;
  await emit(opts.output ?? null, opts.json === true
    ? renderJson({ data: entries.map(entryJson), next_cursor: nextCursor })
    : renderLedgerTable(entries));
  if (nextCursor !== null && opts.json !== true) note(`more: --cursor ${nextCursor}`);
}

function renderLedgerTable(entries: LedgerEntry[]): string {
  return renderTable(['id', 'created_at', 'user', 'kind', 'amount_usd', 'balance_after_usd', 'model', 'tokens in/out', 'note'],
    entries.map((entry) => [
      entry.id, entry.createdAt.toISOString(), entry.userId, entry.kind, formatNano(entry.amountNano),
      formatNano(entry.balanceAfterNano), entry.model,
      entry.promptTokens === null && entry.completionTokens === null ? null : `${entry.promptTokens ?? '-'}/${entry.completionTokens ?? '-'}`,
      entry.note,
    ]), { alignRight: [0, 4, 5] });
}
