import type pg from 'pg';
import cliProgress from 'cli-progress';
import { reports, type LedgerFilters } from '@metergate/db';
import { LEDGER_CSV_COLUMNS, ledgerCsvRow } from '@metergate/server/ledger-csv';
import { note, openSink } from '../output.js';

/** Rows fetched per round trip by the server-side cursor: constant memory whatever the range. */
const BATCH_ROWS = 2_000;

/**
 * The whole filtered range as CSV, newest first, streamed from a Postgres cursor with
 * backpressure (one batch in memory at a time). Byte for byte the admin API's export: the
 * header and rows come from the server's own CSV functions. A progress bar goes to stderr
 * when stderr is a terminal and the CSV is not printed on that same terminal.
 */
export async function exportLedgerCsv(pool: pg.Pool, filters: LedgerFilters, options: { limit: number | null; output: string | null }): Promise<void> {
  const progress = await startProgress(pool, filters, options);
  const sink = openSink(options.output);
  const client = await pool.connect();
  let rows = 0;
  try {
    await sink.write(`${LEDGER_CSV_COLUMNS.join(',')}\r\n`);
    for await (const entry of reports.streamLedger(client, filters, BATCH_ROWS)) {
      await sink.write(ledgerCsvRow(entry));
      rows += 1;
      progress?.update(rows);
      if (options.limit !== null && rows >= options.limit) break;
    }
  } finally {
    client.release();
    progress?.stop(rows);
  }
  await sink.close();
  if (options.output !== null) note(`wrote ${rows} ledger entries to ${options.output}`);
}

async function startProgress(pool: pg.Pool, filters: LedgerFilters, options: { limit: number | null; output: string | null }) {
  const terminal = process.stderr.isTTY && (options.output !== null || !process.stdout.isTTY);
  if (!terminal) return null;
  const counted = await reports.countLedger(pool, filters);
  let total = options.limit === null ? counted : Math.min(counted, options.limit);
  const bar = new cliProgress.SingleBar({
    stream: process.stderr, fps: 5, etaBuffer: 5_000,
    format: 'ledger export [{bar}] {percentage}% | {value}/{total} entries | eta {eta_formatted}',
  }, cliProgress.Presets.shades_classic);
  bar.start(total, 0);
  return {
    update(rows: number) {
      // Rows settled since the count was taken: grow the total rather than pass 100 %.
      if (rows > total) bar.setTotal(total = rows);
      bar.update(rows);
    },
    stop(rows: number) {
      bar.setTotal(rows);
      bar.update(rows);
      bar.stop();
    },
  };
}
