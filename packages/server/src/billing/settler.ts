import { isDatabaseUnavailable, ledger, requests, sqlState, type SettledEntry, type UsageSettlement } from '@metergate/db';
import type pg from 'pg';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { HandOffs } from '../reconcile/hand-offs.js';
import { RetryQueue } from './retry-queue.js';
import { SettleBatcher, type SettleBatcherOptions } from './settle-batcher.js';
import { isRejectedCost, type UsageCost } from './usage-cost.js';

export interface SettleInput {
  requestId: string;
  userId: string;
  generationId: string | null;
  cost: UsageCost;
}

export type SettleResult = 'settled' | 'already_settled' | 'deferred' | 'unresolved';

const RETRY_DELAYS_MS = [250, 500, 1_000, 2_000, 5_000, 10_000, 30_000];

export interface SettleRetryLimits {
  entriesMax: number;
  attemptsMax: number;
}

/**
 * Writes a request's cost to the ledger exactly once, releasing its hold in the same
 * statement. When the database cannot take it now, the settlement is kept in memory and
 * retried with backoff, within bounds (entries, attempts, transient errors only); what it
 * gives up on is marked awaiting_cost for the reconciler, which settles it from the generation
 * lookup (so does a process that dies). A cost out of range, or a settle Postgres refuses for
 * good, is not retried: the request is marked `unresolved` with the reason, for an operator,
 * and keeps its hold. Nothing is swallowed.
 */
export class Settler {
  readonly #queue: RetryQueue;
  /** The settlement of each entry in the queue (by request id), for the hand-off. */
  readonly #inputs = new Map<string, SettleInput>();
  readonly #batcher: SettleBatcher;
  /** Settle statements under way from this process, on either path (see attempt). */
  #settling = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    limits: SettleRetryLimits,
    handOffs: HandOffs,
    /** The controls' clock for spend-limit periods (null: the database's now()). */
    private readonly clock: () => Date | null = () => null,
    batching: SettleBatcherOptions = { batchMax: 1, batchesInFlightMax: 1 },
  ) {
    this.#batcher = new SettleBatcher(pool, batching, {
      batchFailed: (error, size) => {
        this.metrics.statementBatchFailures.inc({ kind: 'settle' });
        this.log.warn({ err: error, size }, 'a batch of settles failed; settling each alone');
      },
      sent: (size) => this.metrics.statementBatchSize.observe({ kind: 'settle' }, size),
    });
    this.#queue = new RetryQueue({
      name: 'settle', ...limits, delaysMs: RETRY_DELAYS_MS,
      handOff: async (requestId, reason, error) => {
        const input = this.#inputs.get(requestId);
        this.#inputs.delete(requestId);
        if (input === undefined) return;
        this.log.error({ err: error, requestId, reason, generationId: input.generationId, costNano: costText(input.cost) },
          'settle given up in memory; the reconciler settles it from the generation lookup');
        await handOffs.handOff(requestId, input.generationId, `settle_gave_up_${reason}`);
      },
    }, metrics, log);
  }

  get pendingRetries(): number { return this.#queue.size; }

  /**
   * `lockTxn` (serialize mode): the first attempt runs in the user's lock transaction and
   * commits with it in one round trip, unless other settles are under way (then it is batched
   * with them, see attempt); retries run on the write pool like any other.
   */
  async settle(input: SettleInput, lockTxn?: ledger.SettleInLockTransaction): Promise<SettleResult> {
    try {
      return await this.attempt(input, lockTxn);
    } catch (error) {
      this.metrics.settles.inc({ outcome: 'deferred' });
      this.recordGenerationId(input);
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

  private async attempt(input: SettleInput, lockTxn?: ledger.SettleInLockTransaction): Promise<SettleResult> {
    const cost = input.cost;
    if (isRejectedCost(cost)) {
      this.log.error({ requestId: input.requestId, userId: input.userId, rawCost: cost.raw }, 'upstream cost out of range; not charged, left unresolved for an operator');
      return this.unresolve(input, `${cost.rejected}:${cost.raw}`);
    }
    const usage: UsageSettlement = {
      requestId: input.requestId,
      // What the user is charged is priced from it inside the settle statement.
      upstreamCostNano: cost.costNano,
      generationId: input.generationId,
      promptTokens: cost.promptTokens,
      completionTokens: cost.completionTokens,
      servedModel: cost.servedModel,
      now: this.clock(),
      provider: cost.provider,
      isByok: cost.isByok,
      cachedTokens: cost.cachedTokens ?? null, cacheWriteTokens: cost.cacheWriteTokens ?? null, reasoningTokens: cost.reasoningTokens ?? null,
    };
    let entry: SettledEntry | null;
    try {
      // Serialize: alone, the settle is the lock transaction's last statement, committed with it
      // in one round trip; under load it joins the batched settles instead (one statement and
      // one commit for many users), and the lock transaction, which wrote nothing, commits
      // after it without a WAL flush. Either way the cost is committed before the lock is freed.
      // Every settle of this process goes through here, so none under way means none batched either.
      const alone = this.#settling === 0;
      this.#settling += 1;
      try {
        entry = lockTxn !== undefined && alone ? await ledger.settleUsage(lockTxn, usage) : await this.#batcher.settle(usage);
      } finally {
        this.#settling -= 1;
      }
    } catch (error) {
      const refusal = permanentRefusal(error);
      if (refusal === null) throw error;
      this.log.error({ err: error, requestId: input.requestId, costNano: cost.costNano.toString() }, 'settle refused for good; left unresolved for an operator');
      return this.unresolve(input, `settle_rejected:${refusal}`);
    }
    this.#inputs.delete(input.requestId);
    if (entry === null) {
      this.metrics.settles.inc({ outcome: 'already_settled' });
      return 'already_settled';
    }
    this.metrics.settles.inc({ outcome: 'settled' });
    this.metrics.costRecorded.inc(Number(entry.upstreamCostNano ?? 0n));
    this.metrics.charged.inc(Number(-entry.amountNano));
    this.countOverage(input.requestId, entry);
    return 'settled';
  }

  /**
   * Charged in full whatever the hold was (overage is recorded, never capped); counted so an
   * operator sees when the worst-case rule or a pinned price fell short.
   */
  private countOverage(requestId: string, entry: SettledEntry): void {
    const overNano = -entry.amountNano - entry.releasedHoldNano;
    if (overNano <= 0n) return;
    this.metrics.holdOverages.inc();
    this.metrics.holdOverage.inc(Number(overNano));
    this.log.warn({ requestId, chargedNano: (-entry.amountNano).toString(), holdNano: entry.releasedHoldNano.toString() }, 'charge exceeded the hold');
  }

  /** If this write fails the caller defers and retries it like a settle (it is idempotent). */
  private async unresolve(input: SettleInput, reason: string): Promise<SettleResult> {
    const marked = await requests.markUnresolved(this.pool, input.requestId, reason);
    this.#inputs.delete(input.requestId);
    if (!marked) {
      // Already closed elsewhere (settled by a reconciler, or marked before): nothing to do.
      this.metrics.settles.inc({ outcome: 'already_settled' });
      return 'already_settled';
    }
    this.metrics.settles.inc({ outcome: 'unresolved' });
    return 'unresolved';
  }

  /**
   * The durable trace gets the generation id now if the database takes anything at all: should
   * this process die before a retry lands, the reconciler can still look it up.
   */
  private recordGenerationId(input: SettleInput): void {
    if (input.generationId === null) return;
    requests.recordGenerationId(this.pool, input.requestId, input.generationId).catch((error: unknown) => {
      this.log.warn({ err: error, requestId: input.requestId }, 'could not record the generation id of a deferred settle');
    });
  }
}

function costText(cost: UsageCost): string {
  return isRejectedCost(cost) ? cost.raw : cost.costNano.toString();
}

/**
 * A settle Postgres will refuse however often it is retried: a data exception (class 22, e.g.
 * 22003 numeric out of range) or a constraint (class 23), or an error not from the database at
 * all (a bug). Null: worth retrying.
 */
function permanentRefusal(error: unknown): string | null {
  if (isDatabaseUnavailable(error)) return null;
  const state = sqlState(error);
  if (state === undefined) return 'internal_error';
  return state.startsWith('22') || state.startsWith('23') ? state : null;
}
