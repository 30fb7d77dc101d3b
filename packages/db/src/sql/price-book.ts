/**
 * The price book (migrations/0007_holds.sql): per-model prices in atto-USD per unit, shared by
 * every replica. Upstream rows are refreshed from GET /models by whichever replica claims the
 * refresh; operator rows are pinned and never overwritten by a refresh.
 */
import type { Queryable } from './queryable.js';

export interface ModelPrice {
  modelId: string;
  promptAtto: bigint;
  completionAtto: bigint;
  requestAtto: bigint;
  imageAtto: bigint;
  webSearchAtto: bigint;
  internalReasoningAtto: bigint;
  inputCacheReadAtto: bigint;
  inputCacheWriteAtto: bigint;
  contextLength: number | null;
  maxCompletionTokens: number | null;
  source: 'upstream' | 'operator';
  note: string | null;
  updatedAt: Date;
}

const COLUMNS = `model_id, prompt_atto, completion_atto, request_atto, image_atto, web_search_atto, internal_reasoning_atto,
  input_cache_read_atto, input_cache_write_atto, context_length, max_completion_tokens, source, note, updated_at`;

interface RawPrice {
  model_id: string; prompt_atto: string; completion_atto: string; request_atto: string; image_atto: string;
  web_search_atto: string; internal_reasoning_atto: string; input_cache_read_atto: string; input_cache_write_atto: string;
  context_length: number | null; max_completion_tokens: number | null; source: 'upstream' | 'operator'; note: string | null;
  updated_at: Date;
}

function toPrice(row: RawPrice): ModelPrice {
  return {
    modelId: row.model_id, promptAtto: BigInt(row.prompt_atto), completionAtto: BigInt(row.completion_atto),
    requestAtto: BigInt(row.request_atto), imageAtto: BigInt(row.image_atto), webSearchAtto: BigInt(row.web_search_atto),
    internalReasoningAtto: BigInt(row.internal_reasoning_atto), inputCacheReadAtto: BigInt(row.input_cache_read_atto),
    inputCacheWriteAtto: BigInt(row.input_cache_write_atto), contextLength: row.context_length,
    maxCompletionTokens: row.max_completion_tokens, source: row.source, note: row.note, updatedAt: row.updated_at,
  };
}

export async function listPrices(db: Queryable): Promise<ModelPrice[]> {
  const result = await db.query<RawPrice>(`select ${COLUMNS} from model_prices order by model_id`);
  return result.rows.map(toPrice);
}

export async function getPrice(db: Queryable, modelId: string): Promise<ModelPrice | null> {
  const result = await db.query<RawPrice>(`select ${COLUMNS} from model_prices where model_id = $1::text`, [modelId]);
  const row = result.rows[0];
  return row === undefined ? null : toPrice(row);
}

export type PriceInput = Omit<ModelPrice, 'source' | 'note' | 'updatedAt'>;

/** The eleven arrays of arrays() below, as rows: $1 … $11. */
const PRICE_ROWS = `unnest($1::text[], $2::numeric[], $3::numeric[], $4::numeric[], $5::numeric[], $6::numeric[], $7::numeric[],
                   $8::numeric[], $9::numeric[], $10::integer[], $11::integer[]) as t(m, p, c, r, i, w, ir, cr, cw, ctx, mct)`;

/** An upsert's new prices and limits (every price column but the key, source and note). */
const PRICE_UPDATES = `prompt_atto = excluded.prompt_atto, completion_atto = excluded.completion_atto, request_atto = excluded.request_atto,
       image_atto = excluded.image_atto, web_search_atto = excluded.web_search_atto,
       internal_reasoning_atto = excluded.internal_reasoning_atto, input_cache_read_atto = excluded.input_cache_read_atto,
       input_cache_write_atto = excluded.input_cache_write_atto, context_length = excluded.context_length,
       max_completion_tokens = excluded.max_completion_tokens`;

function arrays(prices: readonly PriceInput[]): unknown[] {
  const column = (pick: (p: PriceInput) => bigint | number | string | null) => prices.map((p) => {
    const value = pick(p);
    return typeof value === 'bigint' ? value.toString() : value;
  });
  return [
    column((p) => p.modelId), column((p) => p.promptAtto), column((p) => p.completionAtto), column((p) => p.requestAtto),
    column((p) => p.imageAtto), column((p) => p.webSearchAtto), column((p) => p.internalReasoningAtto),
    column((p) => p.inputCacheReadAtto), column((p) => p.inputCacheWriteAtto), column((p) => p.contextLength),
    column((p) => p.maxCompletionTokens),
  ];
}

/**
 * A refresh from upstream in one statement: every listed model upserted, except models an
 * operator has pinned. Models upstream no longer lists are kept (a last good copy).
 */
export async function upsertUpstreamPrices(db: Queryable, prices: readonly PriceInput[]): Promise<number> {
  const result = await db.query(
    `insert into model_prices (${COLUMNS.replace(', source, note, updated_at', '')}, source, updated_at)
     select m, p, c, r, i, w, ir, cr, cw, ctx, mct, 'upstream', now()
       from ${PRICE_ROWS}
     on conflict (model_id) do update set
${PRICE_UPDATES}, updated_at = now()
     where model_prices.source = 'upstream'`,
    arrays(prices),
  );
  return result.rowCount ?? 0;
}

/** An operator pins a model's price (insert or overwrite); refreshes leave it alone. */
export async function pinPrice(db: Queryable, price: PriceInput, note: string | null): Promise<ModelPrice> {
  const result = await db.query<RawPrice>(
    `insert into model_prices (${COLUMNS.replace(', updated_at', '')}, updated_at)
     select m, p, c, r, i, w, ir, cr, cw, ctx, mct, 'operator', $12::text, now()
       from ${PRICE_ROWS}
     on conflict (model_id) do update set
${PRICE_UPDATES}, source = 'operator', note = excluded.note, updated_at = now()
     returning ${COLUMNS}`,
    [...arrays([price]), note],
  );
  return toPrice(result.rows[0]!);
}

/**
 * Unpins a model: the row is removed, and the next refresh brings the upstream price back.
 * False when no operator price was set.
 */
export async function unpinPrice(db: Queryable, modelId: string): Promise<boolean> {
  const result = await db.query(`delete from model_prices where model_id = $1::text and source = 'operator'`, [modelId]);
  return result.rowCount === 1;
}

/**
 * Claims the next refresh for this replica when the book is older than `intervalMs` and no
 * other replica is refreshing it (its claim lasts `claimMs`). One statement; true = go fetch.
 */
export async function claimRefresh(db: Queryable, intervalMs: number, claimMs: number): Promise<boolean> {
  const result = await db.query(
    `update price_book_state
        set refreshing_until = now() + $2::integer * interval '1 millisecond'
      where (refreshed_at is null or refreshed_at < now() - $1::integer * interval '1 millisecond')
        and (refreshing_until is null or refreshing_until < now())`,
    [intervalMs, claimMs],
  );
  return result.rowCount === 1;
}

/** Ends a claimed refresh: on success the book is fresh; on failure the error is kept for operators. */
export async function finishRefresh(db: Queryable, error: string | null): Promise<void> {
  await db.query(
    `update price_book_state
        set refreshing_until = null, last_error = $1::text,
            refreshed_at = case when $1::text is null then now() else refreshed_at end`,
    [error],
  );
}

export async function refreshState(db: Queryable): Promise<{ refreshedAt: Date | null; lastError: string | null }> {
  const result = await db.query<{ refreshed_at: Date | null; last_error: string | null }>(
    'select refreshed_at, last_error from price_book_state',
  );
  const row = result.rows[0];
  return { refreshedAt: row?.refreshed_at ?? null, lastError: row?.last_error ?? null };
}
