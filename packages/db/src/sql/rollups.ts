/**
 * The usage rollups, in one place: each table, its key columns with the key computed from a
 * ledger row, and the measures every one of them sums. The settle statement (ledger.ts) adds
 * each new usage entry to them from this list; the usage planner and the top users read these
 * measures; the rollup check (reports/rollup-check.ts) recomputes every key from the ledger.
 *
 * Migrations 0003 and 0004 define the SQL functions usage_rollups_add() and
 * usage_rollups_rebuild() with the same tables and keys written out: SQL in a shipped
 * migration cannot import this list and is never edited. A change here therefore needs a new
 * migration redefining those functions; `npm run verify -- --rollups` and
 * reports-migration.test.ts catch the two drifting apart.
 */

/** What every rollup row sums, in column order. */
export const ROLLUP_MEASURES = ['requests', 'prompt_tokens', 'completion_tokens', 'upstream_cost_nano', 'charged_nano'] as const;

/** A ledger_entries column a rollup key is computed from. */
type EntryColumn = 'user_id' | 'created_at' | 'model';

/** One key column of a rollup and its value from a ledger row, `column` naming that row's columns. */
interface RollupKey { name: string; of(column: (name: EntryColumn) => string): string }

export interface Rollup { table: string; keys: readonly RollupKey[] }

const user: RollupKey = { name: 'user_id', of: (c) => c('user_id') };
const model: RollupKey = { name: 'model', of: (c) => `coalesce(${c('model')}, '')` };
/** Model rollups are sharded 8 ways by user so that no row is hot for a popular model. */
const shard: RollupKey = { name: 'shard', of: (c) => `(hashtext(${c('user_id')}) & 7)::smallint` };
const bucket = (unit: 'hour' | 'day' | 'week' | 'month'): RollupKey =>
  ({ name: 'bucket', of: (c) => `date_trunc('${unit}', ${c('created_at')}, 'UTC')` });

export const ROLLUPS: readonly Rollup[] = [
  { table: 'usage_hourly', keys: [user, bucket('hour'), model] },
  { table: 'usage_user_daily', keys: [user, bucket('day')] },
  { table: 'usage_user_weekly', keys: [user, bucket('week')] },
  { table: 'usage_user_monthly', keys: [user, bucket('month')] },
  { table: 'usage_user_totals', keys: [user] },
  { table: 'usage_model_hourly', keys: [bucket('hour'), model, shard] },
  { table: 'usage_model_daily', keys: [bucket('day'), model, shard] },
];

/** The key column names of a rollup, in order. */
export function rollupKeyNames(rollup: Rollup): string[] {
  return rollup.keys.map((key) => key.name);
}

/** The key values of a rollup computed from the ledger row `alias` ('' = unqualified columns). */
export function rollupKeyValues(rollup: Rollup, alias: string): string[] {
  const column = (name: EntryColumn) => (alias === '' ? name : `${alias}.${name}`);
  return rollup.keys.map((key) => key.of(column));
}
