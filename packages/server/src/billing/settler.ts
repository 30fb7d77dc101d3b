import { isDatabaseUnavailable, ledger, requests, type SettledEntry } from '@metergate/db';
import type pg from 'pg';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { MeasuredCost } from './usage-cost.js';

export interface SettleInput {
  requestId: string;
  userId: string;
  generationId: string | null;
  cost: MeasuredCost;
}

export type SettleResult = 'settled' | 'already_settled' | 'deferred';

const RETRY_DELAYS_MS = [250, 500, 1_000, 2_000, 5_000, 10_000, 30_000];

/**
 * Writes a request's cost to the ledger exactly once. When the database cannot take it now,
 * the settlement is kept in memory and retried with backoff until it lands (or the process
 * dies, and the reconciler settles it from the generation lookup). Nothing is swallowed.
 */
export class Settler {
  readonly #retrying = new Map<string, { input: SettleInput; attempt: number; timer: NodeJS.Timeout }>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  get pendingRetries(): number { return this.#retrying.size; }

  async settle(input: SettleInput): Promise<SettleResult> {
    try {
      return await this.attempt(input);
    } catch (error) {
      this.defer(input, 0, error);
      return 'deferred';
    }
  }

  /** Waits (bounded) for deferred settlements, for graceful shutdown. */
  async drain(deadlineMs: number): Promise<number> {
    const until = Date.now() + deadlineMs;
    while (this.#retrying.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    return this.#retrying.size;
  }

  stop(): void {
    for (const { timer } of this.#retrying.values()) clearTimeout(timer);
    this.#retrying.clear();
  }

  private async attempt(input: SettleInput): Promise<SettleResult> {
    const entry: SettledEntry | null = await ledger.settleUsage(this.pool, {
      requestId: input.requestId,
      // What the user is charged is priced from it inside the settle statement.
      upstreamCostNano: input.cost.costNano,
      generationId: input.generationId,
      promptTokens: input.cost.promptTokens,
      completionTokens: input.cost.completionTokens,
    });
    if (entry === null) {
      this.metrics.settles.inc({ outcome: 'already_settled' });
      return 'already_settled';
    }
    this.metrics.settles.inc({ outcome: 'settled' });
    this.metrics.costRecorded.inc(Number(entry.upstreamCostNano ?? 0n));
    this.metrics.charged.inc(Number(-entry.amountNano));
    // Charged in full whatever the hold was (overage is recorded, never capped); counted so an
    // operator sees when the worst-case rule or a pinned price fell short.
    const overNano = -entry.amountNano - entry.releasedHoldNano;
    if (overNano > 0n) {
      this.metrics.holdOverages.inc();
      this.metrics.holdOverage.inc(Number(overNano));
      this.log.warn({ requestId: input.requestId, chargedNano: (-entry.amountNano).toString(), holdNano: entry.releasedHoldNano.toString() }, 'charge exceeded the hold');
    }
    return 'settled';
  }

  private defer(input: SettleInput, attempt: number, error: unknown): void {
    if (attempt === 0 && input.generationId !== null) {
      // The durable trace gets the generation id now if the database takes anything at all:
      // should this process die before a retry lands, the reconciler can still look it up.
      requests.recordGenerationId(this.pool, input.requestId, input.generationId).catch((recordError: unknown) => {
        this.log.warn({ err: recordError, requestId: input.requestId }, 'could not record the generation id of a deferred settle');
      });
    }
    const delayMs = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)]!;
    this.metrics.settles.inc({ outcome: 'deferred' });
    const level = isDatabaseUnavailable(error) ? 'warn' : 'error';
    this.log[level]({ err: error, requestId: input.requestId, attempt, delayMs, costNano: input.cost.costNano.toString() },
      'settle failed; kept in memory and retried');
    const timer = setTimeout(() => {
      this.attempt(input).then(
        () => this.#retrying.delete(input.requestId),
        (retryError: unknown) => this.defer(input, attempt + 1, retryError),
      );
    }, delayMs);
    timer.unref();
    this.#retrying.set(input.requestId, { input, attempt, timer });
  }
}
