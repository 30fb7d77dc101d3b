import { ledger, type LedgerEntry } from '@metergate/db';
import type pg from 'pg';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { HandOffs } from '../reconcile/hand-offs.js';
import { RetryQueue } from './retry-queue.js';
import type { MeasuredCost } from './usage-cost.js';

export interface SettleInput {
  requestId: string;
  userId: string;
  generationId: string | null;
  cost: MeasuredCost;
}

export type SettleResult = 'settled' | 'already_settled' | 'deferred';

const RETRY_DELAYS_MS = [250, 500, 1_000, 2_000, 5_000, 10_000, 30_000];

export interface SettleRetryLimits {
  entriesMax: number;
  attemptsMax: number;
}

/**
 * Writes a request's cost to the ledger exactly once. When the database cannot take it now,
 * the settlement is kept in memory and retried with backoff, within bounds (entries, attempts,
 * transient errors only); what it gives up on is marked awaiting_cost for the reconciler,
 * which settles it from the generation lookup (so does a process that dies). Nothing is
 * swallowed: a give-up is logged with the cost and counted.
 */
export class Settler {
  readonly #queue: RetryQueue;
  /** The settlement of each entry in the queue (by request id), for the hand-off. */
  readonly #inputs = new Map<string, SettleInput>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    limits: SettleRetryLimits,
    handOffs: HandOffs,
  ) {
    this.#queue = new RetryQueue({
      name: 'settle', ...limits, delaysMs: RETRY_DELAYS_MS,
      handOff: async (requestId, reason, error) => {
        const input = this.#inputs.get(requestId);
        this.#inputs.delete(requestId);
        if (input === undefined) return;
        this.log.error({ err: error, requestId, reason, generationId: input.generationId, costNano: input.cost.costNano.toString() },
          'settle given up in memory; the reconciler settles it from the generation lookup');
        await handOffs.handOff(requestId, input.generationId, `settle_gave_up_${reason}`);
      },
    }, metrics, log);
  }

  get pendingRetries(): number { return this.#queue.size; }

  async settle(input: SettleInput): Promise<SettleResult> {
    try {
      return await this.attempt(input);
    } catch (error) {
      this.metrics.settles.inc({ outcome: 'deferred' });
      this.#inputs.set(input.requestId, input);
      this.#queue.defer(input.requestId, () => this.attempt(input), error);
      return 'deferred';
    }
  }

  /** Waits (bounded) for deferred settlements, for graceful shutdown. */
  drain(deadlineMs: number): Promise<number> {
    return this.#queue.drain(deadlineMs);
  }

  stop(): void {
    this.#queue.stop();
    this.#inputs.clear();
  }

  private async attempt(input: SettleInput): Promise<SettleResult> {
    const entry: LedgerEntry | null = await ledger.settleUsage(this.pool, {
      requestId: input.requestId,
      // What the user is charged is priced from it inside the settle statement.
      upstreamCostNano: input.cost.costNano,
      generationId: input.generationId,
      promptTokens: input.cost.promptTokens,
      completionTokens: input.cost.completionTokens,
    });
    this.#inputs.delete(input.requestId);
    if (entry === null) {
      this.metrics.settles.inc({ outcome: 'already_settled' });
      return 'already_settled';
    }
    this.metrics.settles.inc({ outcome: 'settled' });
    this.metrics.costRecorded.inc(Number(entry.upstreamCostNano ?? 0n));
    this.metrics.charged.inc(Number(-entry.amountNano));
    return 'settled';
  }
}
