import { priceBook, type ModelPrice } from '@metergate/db';
import type pg from 'pg';
import type { Logger } from '../log.js';
import type { OpenRouterClient } from '../upstream/openrouter.js';
import { readBody } from '../upstream/read-body.js';
import { parseModelsListing } from './models-listing.js';

export interface PriceBookOptions {
  /** The shared book is refetched from upstream when older than this. */
  refreshIntervalMs: number;
  /** Each replica re-reads the shared book this often (operator pins elsewhere show up within it). */
  reloadIntervalMs: number;
  /** Longest wait for upstream /models. */
  fetchTimeoutMs: number;
}

const MODELS_BYTES_MAX = 32 * 1024 * 1024;
const START_POLL_MS = 200;

export type RefreshOutcome = 'refreshed' | 'not_claimed' | 'failed';

/**
 * Model prices for worst-case holds, kept in memory from the shared `model_prices` table. One
 * replica at a time refreshes the table from upstream (a claim row keeps the others off); a
 * failed refresh keeps the last good copy and is retried at the next reload. Lookups are
 * synchronous: the hot path never waits on the book.
 */
/** Every model a metered endpoint can call, embeddings included (OpenRouter lists text models only by default). */
const PRICED_MODALITIES = 'output_modalities=all';

export class PriceBook {
  #prices = new Map<string, ModelPrice>();
  #timer: NodeJS.Timeout | null = null;
  #tick: Promise<RefreshOutcome> | null = null;
  /** Aborted by stop(): a refresh hanging on upstream must not hold up shutdown. */
  readonly #stopped = new AbortController();

  constructor(
    private readonly pool: pg.Pool,
    private readonly upstream: OpenRouterClient,
    private readonly log: Logger,
    private readonly options: PriceBookOptions,
  ) {}

  get size(): number { return this.#prices.size; }

  /** The price of exactly this model id (variants are resolved by the worst-case rule). */
  lookup(modelId: string): ModelPrice | undefined {
    return this.#prices.get(modelId);
  }

  /**
   * Loads the book, then keeps it current on a timer. Only with an empty table (a fresh
   * database) does start-up wait for a refresh from upstream. On a fresh
   * database another replica may hold the refresh claim: wait (bounded) for its prices rather
   * than start with an empty book, which reserve mode would answer with "unpriced" until the
   * next reload.
   */
  async start(): Promise<void> {
    await this.reload();
    if (this.#prices.size > 0) {
      // The shared table already has prices: take traffic with them at once, and let a due
      // refresh (an upstream call that can take UPSTREAM_TIMEOUT_MS) run in the background.
      void this.runTick();
      this.schedule();
      return;
    }
    let outcome = await this.runTick();
    const until = Date.now() + 2 * this.options.fetchTimeoutMs;
    // Only while another replica's first refresh is under way: if our own fetch failed (the
    // upstream is down), start at once with what the table has.
    while (outcome === 'not_claimed' && this.#prices.size === 0 && Date.now() < until
      && (await priceBook.refreshState(this.pool)).refreshedAt === null) {
      await new Promise((resolve) => setTimeout(resolve, START_POLL_MS));
      outcome = await this.runTick();
    }
    if (this.#prices.size === 0) this.log.error('the price book is empty: reserve mode refuses every call until prices load (see GET /admin/prices)');
    this.schedule();
  }

  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#stopped.abort();
  }

  /** Re-reads the shared table now (after an operator pinned a price on this replica). */
  async reload(): Promise<void> {
    const prices = await priceBook.listPrices(this.pool);
    this.#prices = new Map(prices.map((price) => [price.modelId, price]));
  }

  /** One refresh from upstream if this replica wins the claim (not_claimed: fresh, or another replica is at it). */
  async refreshIfDue(): Promise<RefreshOutcome> {
    const claimMs = this.options.fetchTimeoutMs * 2;
    if (!(await priceBook.claimRefresh(this.pool, this.options.refreshIntervalMs, claimMs))) return 'not_claimed';
    try {
      const response = await this.upstream.models(AbortSignal.any([AbortSignal.timeout(this.options.fetchTimeoutMs), this.#stopped.signal]), PRICED_MODALITIES);
      const body = await readBody(response.body, MODELS_BYTES_MAX);
      if (response.status !== 200) throw new Error(`upstream /models answered ${response.status}`);
      const listing = parseModelsListing(JSON.parse(body.toString('utf8')) as unknown);
      if (listing.skipped.length > 0) this.log.warn({ skipped: listing.skipped.slice(0, 20), count: listing.skipped.length }, 'models without a usable price');
      const written = await priceBook.upsertUpstreamPrices(this.pool, listing.prices);
      await priceBook.finishRefresh(this.pool, null);
      this.log.info({ models: listing.prices.length, written }, 'price book refreshed from upstream');
      return 'refreshed';
    } catch (error) {
      this.log.warn({ err: error }, 'price book refresh failed; the last good copy stays in use');
      await priceBook.finishRefresh(this.pool, error instanceof Error ? error.message.slice(0, 500) : String(error).slice(0, 500));
      return 'failed';
    }
  }

  private async runTick(): Promise<RefreshOutcome> {
    this.#tick ??= (async () => {
      try {
        const outcome = await this.refreshIfDue();
        await this.reload();
        return outcome;
      } catch (error) {
        this.log.warn({ err: error }, 'price book reload failed; the copy in memory stays in use');
        return 'failed' as const;
      } finally {
        this.#tick = null;
      }
    })();
    return this.#tick;
  }

  private schedule(): void {
    this.#timer = setTimeout(() => {
      void this.runTick().finally(() => { if (this.#timer !== null) this.schedule(); });
    }, this.options.reloadIntervalMs);
    this.#timer.unref();
  }
}
