import type pg from 'pg';

/**
 * The proxy's books as the tests compare them with the simulator's: total usage charged per
 * user, and the invariant balance = Σ ledger for every user.
 */
export async function ledgerUsageNano(pool: pg.Pool, userId?: string): Promise<bigint> {
  const result = await pool.query<{ total: string }>(
    `select coalesce(-sum(amount_nano), 0)::text as total from ledger_entries
      where kind = 'usage' and ($1::text is null or user_id = $1::text)`,
    [userId ?? null],
  );
  return BigInt(result.rows[0]!.total);
}

export async function balanceBreaches(pool: pg.Pool): Promise<string[]> {
  const result = await pool.query<{ id: string }>(
    `select u.id from users u
       left join (select user_id, sum(amount_nano) as total from ledger_entries group by user_id) l on l.user_id = u.id
      where u.balance_nano <> coalesce(l.total, 0)`,
  );
  return result.rows.map((row) => row.id);
}

export async function requestStates(pool: pg.Pool): Promise<Record<string, number>> {
  const result = await pool.query<{ state: string; n: number }>('select state, count(*)::integer as n from requests group by state');
  return Object.fromEntries(result.rows.map((row) => [row.state, row.n]));
}

/** Polls until predicate holds or timeoutMs passes; returns the last value. */
export async function eventually<T>(read: () => Promise<T>, predicate: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let value = await read();
  while (!predicate(value) && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    value = await read();
  }
  return value;
}
