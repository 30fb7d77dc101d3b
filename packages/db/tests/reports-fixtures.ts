// Fixtures for the reporting tests: settles through the real settle statement, and ledger
// entries written at chosen times (the settle statement stamps now(), so spreading entries
// over hours, days and months needs a direct writer). The direct writer keeps the books the
// way the server does — running balances, the users' totals, the rollups via
// usage_rollups_add() — so every report can be compared with plain SQL over the ledger.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { ledger, requests, users, type LedgerKind, type Queryable } from '@metergate/db';

export async function ensureUser(db: Queryable, id: string): Promise<void> {
  await users.insertUser(db, id);
}

/** An open request and its settle through ledger.settleUsage (priced and rolled up in SQL). */
export async function settleNew(
  db: Queryable,
  userId: string,
  model: string | null,
  upstreamCostNano: bigint,
  tokens: { prompt: number | null; completion: number | null } = { prompt: 10, completion: 20 },
) {
  const id = randomUUID();
  await requests.insertRequest(db, { id, userId, replicaId: 'reports-test', model, stream: false });
  const entry = await ledger.settleUsage(db, {
    requestId: id, upstreamCostNano, generationId: `gen-${id}`, promptTokens: tokens.prompt, completionTokens: tokens.completion,
  });
  if (entry === null) throw new Error(`request ${id} did not settle`);
  return entry;
}

export interface TimedEntry {
  userId: string;
  kind: LedgerKind;
  /** Signed amount (usage: minus the amount charged). */
  amountNano: bigint;
  upstreamCostNano?: bigint | null;
  model?: string | null;
  promptTokens?: number | null;
  completionTokens?: number | null;
  note?: string | null;
  at: Date;
}

/**
 * Appends entries with explicit created_at (ids follow the array's order), the running
 * balances, the users' totals and the rollups, in one transaction. Usage entries get a
 * settled request each.
 */
export async function insertTimed(pool: pg.Pool, entries: TimedEntry[]): Promise<void> {
  const rows = entries.map((e, index) => ({
    ord: index, user_id: e.userId, kind: e.kind, amount: e.amountNano.toString(),
    upstream: e.kind === 'usage' ? (e.upstreamCostNano ?? -e.amountNano).toString() : null,
    request_id: e.kind === 'usage' ? randomUUID() : null, model: e.model ?? null,
    prompt: e.promptTokens ?? null, completion: e.completionTokens ?? null, note: e.note ?? null, at: e.at.toISOString(),
  }));
  const client = await pool.connect();
  try {
    await client.query('begin');
    const range = await client.query<{ lo: string; hi: string }>(
      `with input as (
         select * from jsonb_to_recordset($1::jsonb) as x(ord integer, user_id text, kind text, amount bigint, upstream bigint,
                request_id uuid, model text, prompt integer, completion integer, note text, at timestamptz)),
       inserted as (
         insert into ledger_entries (user_id, kind, amount_nano, upstream_cost_nano, balance_after_nano, request_id,
                                     generation_id, model, prompt_tokens, completion_tokens, note, created_at)
         select i.user_id, i.kind, i.amount, i.upstream,
                u.balance_nano + sum(i.amount) over (partition by i.user_id order by i.ord),
                i.request_id, case when i.kind = 'usage' then 'gen-' || i.request_id end, i.model, i.prompt, i.completion,
                i.note, i.at
           from input i join users u on u.id = i.user_id
          order by i.ord
         returning id)
       select min(id)::text as lo, max(id)::text as hi from inserted`,
      [JSON.stringify(rows)],
    );
    const { lo, hi } = range.rows[0]!;
    await client.query(
      `update users u set balance_nano = u.balance_nano + d.total, credits_nano = u.credits_nano + d.credits, usage_nano = u.usage_nano + d.usage
         from (select user_id, sum(amount_nano) as total,
                      coalesce(sum(amount_nano) filter (where kind <> 'usage'), 0) as credits,
                      coalesce(-sum(amount_nano) filter (where kind = 'usage'), 0) as usage
                 from ledger_entries where id between $1::bigint and $2::bigint group by user_id) d
        where u.id = d.user_id`,
      [lo, hi],
    );
    await client.query('select usage_rollups_add($1::bigint, $2::bigint)', [lo, hi]);
    await client.query(
      `insert into requests (id, user_id, replica_id, model, stream, state, generation_id, cost_nano, started_at, updated_at, settled_at)
       select request_id, user_id, 'reports-test', model, false, 'settled', generation_id, upstream_cost_nano, created_at, created_at, created_at
         from ledger_entries where request_id is not null and id between $1::bigint and $2::bigint`,
      [lo, hi],
    );
    await client.query('commit');
  } catch (error) {
    await client.query('rollback');
    throw error;
  } finally {
    client.release();
  }
}

/** The sums a usage report must equal, straight from the ledger. */
export interface Expected { requests: number; prompt: number; completion: number; upstream: bigint; charged: bigint }

export async function ledgerUsage(
  db: Queryable,
  keyExpr: string,
  where: { since?: Date | null; until?: Date | null; userId?: string | null; model?: string | null },
): Promise<Map<string, Expected>> {
  const result = await db.query<{ k: string; requests: string; prompt: string; completion: string; upstream: string; charged: string }>(
    `select ${keyExpr} as k, count(*)::text as requests, coalesce(sum(prompt_tokens), 0)::text as prompt,
            coalesce(sum(completion_tokens), 0)::text as completion, sum(upstream_cost_nano)::text as upstream,
            sum(-amount_nano)::text as charged
       from ledger_entries
      where kind = 'usage'
        and ($1::timestamptz is null or created_at >= $1::timestamptz)
        and ($2::timestamptz is null or created_at < $2::timestamptz)
        and ($3::text is null or user_id = $3::text)
        and ($4::text is null or coalesce(model, '') = $4::text)
      group by 1`,
    [where.since ?? null, where.until ?? null, where.userId ?? null, where.model ?? null],
  );
  return new Map(result.rows.map((row) => [row.k, {
    requests: Number(row.requests), prompt: Number(row.prompt), completion: Number(row.completion),
    upstream: BigInt(row.upstream), charged: BigInt(row.charged),
  }]));
}

export { prng } from './helpers.js';

export function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}
