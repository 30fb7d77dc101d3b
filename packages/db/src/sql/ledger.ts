import assert from 'node:assert/strict';
import { parseNano } from '../money.js';
import type { Queryable } from './queryable.js';

export type LedgerKind = 'grant' | 'usage' | 'adjustment';

export interface LedgerEntry {
  id: string;
  userId: string;
  kind: LedgerKind;
  amountNano: bigint;
  upstreamCostNano: bigint | null;
  balanceAfterNano: bigint;
  requestId: string | null;
  generationId: string | null;
  model: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
  note: string | null;
  createdAt: Date;
}

interface RawEntry {
  id: string; user_id: string; kind: LedgerKind; amount_nano: string; upstream_cost_nano: string | null;
  balance_after_nano: string; request_id: string | null; generation_id: string | null; model: string | null;
  prompt_tokens: number | null; completion_tokens: number | null; note: string | null; created_at: Date;
}

export const LEDGER_COLUMNS = `id, user_id, kind, amount_nano, upstream_cost_nano, balance_after_nano, request_id,
  generation_id, model, prompt_tokens, completion_tokens, note, created_at`;

export function toLedgerEntry(row: RawEntry): LedgerEntry {
  return {
    id: String(row.id),
    userId: row.user_id,
    kind: row.kind,
    amountNano: parseNano(row.amount_nano),
    upstreamCostNano: row.upstream_cost_nano === null ? null : parseNano(row.upstream_cost_nano),
    balanceAfterNano: parseNano(row.balance_after_nano),
    requestId: row.request_id,
    generationId: row.generation_id,
    model: row.model,
    promptTokens: row.prompt_tokens,
    completionTokens: row.completion_tokens,
    note: row.note,
    createdAt: row.created_at,
  };
}

/**
 * A grant (positive) or an adjustment (either sign) and the running totals, in one statement.
 * Returns null when the user does not exist.
 */
export async function appendCredit(
  db: Queryable,
  credit: { userId: string; kind: 'grant' | 'adjustment'; amountNano: bigint; note: string | null },
): Promise<LedgerEntry | null> {
  assert(credit.kind !== 'grant' || credit.amountNano > 0n, 'a grant must be positive');
  const result = await db.query<RawEntry>(
    `with account as (
       update users
          set balance_nano = balance_nano + $3::bigint,
              credits_nano = credits_nano + $3::bigint
        where id = $1::text
       returning id, balance_nano)
     insert into ledger_entries (user_id, kind, amount_nano, balance_after_nano, note)
     select id, $2::text, $3::bigint, balance_nano, $4::text from account
     returning ${LEDGER_COLUMNS}`,
    [credit.userId, credit.kind, credit.amountNano.toString(), credit.note],
  );
  const row = result.rows[0];
  return row === undefined ? null : toLedgerEntry(row);
}

export interface UsageSettlement {
  requestId: string;
  /** What the upstream billed. */
  upstreamCostNano: bigint;
  /** What the user is charged (≥ 0); equal to the upstream cost unless priced. */
  chargedNano: bigint;
  generationId: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
}

/**
 * Settles a request exactly once: the usage entry, the running totals and the request's final
 * state in one statement. Only an open request (in_flight, awaiting_cost, unresolved) moves;
 * a second settle of the same request matches no row (and the unique request_id on the ledger
 * backs that up). Returns null when the request was not open.
 */
export async function settleUsage(db: Queryable, usage: UsageSettlement): Promise<LedgerEntry | null> {
  assert(usage.chargedNano >= 0n && usage.upstreamCostNano >= 0n, 'usage cost cannot be negative');
  const result = await db.query<RawEntry>(
    `with request as (
       update requests
          set state = 'settled', cost_nano = $3::bigint, settled_at = now(), updated_at = now(),
              generation_id = coalesce($4::text, generation_id), next_lookup_at = null
        where id = $1::uuid and state in ('in_flight', 'awaiting_cost', 'unresolved')
       returning user_id, model, generation_id),
     account as (
       update users
          set balance_nano = balance_nano - $2::bigint,
              usage_nano = usage_nano + $2::bigint
         from request
        where users.id = request.user_id
       returning users.id, users.balance_nano)
     insert into ledger_entries (user_id, kind, amount_nano, upstream_cost_nano, balance_after_nano,
                                 request_id, generation_id, model, prompt_tokens, completion_tokens)
     select account.id, 'usage', -$2::bigint, $3::bigint, account.balance_nano,
            $1::uuid, request.generation_id, request.model, $5::integer, $6::integer
       from account, request
     returning ${LEDGER_COLUMNS}`,
    [usage.requestId, usage.chargedNano.toString(), usage.upstreamCostNano.toString(), usage.generationId,
      usage.promptTokens, usage.completionTokens],
  );
  const row = result.rows[0];
  return row === undefined ? null : toLedgerEntry(row);
}

export interface LedgerQuery {
  userId: string | null;
  since: Date | null;
  until: Date | null;
  /** Entries with id below this (keyset pagination, newest first). */
  beforeId: string | null;
  limit: number;
}

export async function listLedger(db: Queryable, query: LedgerQuery): Promise<LedgerEntry[]> {
  const result = await db.query<RawEntry>(
    `select ${LEDGER_COLUMNS} from ledger_entries
      where ($1::text is null or user_id = $1::text)
        and ($2::timestamptz is null or created_at >= $2::timestamptz)
        and ($3::timestamptz is null or created_at < $3::timestamptz)
        and ($4::bigint is null or id < $4::bigint)
      order by id desc
      limit $5::integer`,
    [query.userId, query.since, query.until, query.beforeId, query.limit],
  );
  return result.rows.map(toLedgerEntry);
}
