/**
 * The ledger as CSV (RFC 4180), shared by the admin export and `metergate ledger --csv` so the
 * two are byte for byte the same: the JSON entry's fields, in the same order.
 */
import type { LedgerEntry } from '@metergate/db';
import { entryJson, type EntryJson } from './ledger-json.js';

export const LEDGER_CSV_COLUMNS = [
  'id', 'user_id', 'kind', 'amount_usd', 'charged_usd', 'upstream_cost_usd', 'multiplier', 'balance_after_usd',
  'request_id', 'generation_id', 'model', 'prompt_tokens', 'completion_tokens', 'created_at', 'note',
  'requested_model', 'provider', 'is_byok', 'endpoint', 'cached_tokens', 'cache_write_tokens', 'reasoning_tokens',
] as const satisfies ReadonlyArray<keyof EntryJson>;
type MissingColumn = Exclude<keyof EntryJson, (typeof LEDGER_CSV_COLUMNS)[number]>;
const everyColumn: [MissingColumn] extends [never] ? true : never = true;
void everyColumn;

/**
 * Free-text columns that someone other than the operator can fill: the model an end user asked
 * for, the generation id upstream returned, an operator's note. A spreadsheet runs a cell that
 * starts with = + - @ (or a tab or CR before one) as a formula, so such a value is written
 * with a leading ' (OWASP "CSV injection"). Numbers, ids, kinds and times are never changed:
 * user ids cannot start with those characters (the admin API's USER_ID_RE), and an amount
 * such as -0.000000123 must stay a number.
 */
const FREE_TEXT_COLUMNS: ReadonlySet<string> = new Set(['generation_id', 'model', 'note', 'requested_model', 'provider']);
const FORMULA_START_RE = /^[=+\-@\t\r]/;

/** RFC 4180: a field with a comma, quote, CR or LF (or edge spaces) is quoted, quotes doubled; null is empty. */
export function csvField(value: string | number | boolean | null): string {
  if (value === null) return '';
  const text = String(value);
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** A free-text value a spreadsheet would run as a formula, made inert with a leading '. */
export function inertText(value: string | number | boolean | null): string | number | boolean | null {
  return typeof value === 'string' && FORMULA_START_RE.test(value) ? `'${value}` : value;
}

export function ledgerCsvRow(entry: LedgerEntry): string {
  const json = entryJson(entry);
  const fields = LEDGER_CSV_COLUMNS.map((column) => csvField(FREE_TEXT_COLUMNS.has(column) ? inertText(json[column]) : json[column]));
  return `${fields.join(',')}\r\n`;
}
