/** The rollup check: every rollup against the sums over the ledger (`verify --rollups`, tests). */
import type { Queryable } from '../queryable.js';
import { ROLLUP_MEASURES, ROLLUPS, rollupKeyNames, rollupKeyValues } from '../rollups.js';

/** Each measure as summed over a group of ledger usage rows (what the settle statement adds per row). */
const EXPECTED_MEASURES: Record<(typeof ROLLUP_MEASURES)[number], string> = {
  requests: 'count(*)::bigint',
  prompt_tokens: 'coalesce(sum(prompt_tokens), 0)::bigint',
  completion_tokens: 'coalesce(sum(completion_tokens), 0)::bigint',
  upstream_cost_nano: 'sum(coalesce(upstream_cost_nano, -amount_nano))::bigint',
  charged_nano: 'sum(-amount_nano)::bigint',
};

/**
 * Rows where a rollup differs from the sums over the ledger's usage entries, per rollup table
 * (only tables with differences are listed). A full scan of the ledger: for `verify` and tests.
 */
export async function rollupMismatches(db: Queryable): Promise<Array<{ table: string; rows: number }>> {
  const found: Array<{ table: string; rows: number }> = [];
  const measures = ROLLUP_MEASURES.map((m) => `${EXPECTED_MEASURES[m]} as ${m}`).join(',\n                ');
  for (const rollup of ROLLUPS) {
    const names = rollupKeyNames(rollup);
    const values = rollupKeyValues(rollup, '');
    const result = await db.query<{ n: string }>(
      `with expected as (
         select ${names.map((name, index) => `${values[index]!} as ${name}`).join(', ')},
                ${measures}
           from ledger_entries where kind = 'usage'
          group by ${names.map((_, index) => index + 1).join(', ')})
       select count(*)::text as n
         from expected e full join ${rollup.table} r using (${names.join(', ')})
        where (${ROLLUP_MEASURES.map((m) => `e.${m}`).join(', ')})
              is distinct from (${ROLLUP_MEASURES.map((m) => `r.${m}`).join(', ')})`,
    );
    const rows = Number(result.rows[0]!.n);
    if (rows > 0) found.push({ table: rollup.table, rows });
  }
  return found;
}
