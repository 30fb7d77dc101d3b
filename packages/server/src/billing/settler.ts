import { isDatabaseUnavailable, ledger, requests, sqlState, type SettledEntry } from '@metergate/db';
import type pg from 'pg';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { isRejectedCost, type UsageCost } from './usage-cost.js';

export interface SettleInput {
  requestId: string;
  userId: string;
  generationId: string | null;
  cost: UsageCost;
}

/** `unresolved`: not charged automatically (cost out of range, or refused for good); an operator settles it. */
export type SettleResult = 'settled' | 'already_settled' | 'deferred' | 'unresolved';

const RETRY_DELAYS_MS = [250, 500, 1_000, 2_000, 5_000, 10_000, 30_000];

/**
 * Writes a request's cost to the ledger exactly once. When the database cannot take it now,
 * the settlement is kept in memory and retried with backoff until it lands (or the process
 * dies, and the reconciler settles it from the generation lookup). A cost out of range, or a
 * settle Postgres refuses for good, is not retried: the request is marked `unresolved` with
 * the reason, for an operator. Nothing is swallowed.
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
    const cost = input.cost;
    if (isRejectedCost(cost)) {
      this.log.error({ requestId: input.requestId, userId: input.userId, rawCost: cost.raw }, 'upstream cost out of range; not charged, left unresolved for an operator');
      return this.unresolve(input, `${cost.rejected}:${cost.raw}`);
    }
    let entry: SettledEntry | null;
    try {
      entry = await ledger.settleUsage(this.pool, {
        requestId: input.requestId,
        // What the user is charged is priced from it inside the settle statement.
        upstreamCostNano: cost.costNano,
        generationId: input.generationId,
        promptTokens: cost.promptTokens,
        completionTokens: cost.completionTokens,
        servedModel: cost.servedModel,
        provider: cost.provider,
        isByok: cost.isByok,
      });
    } catch (error) {
      const refusal = permanentRefusal(error);
      if (refusal === null) throw error;
      this.log.error({ err: error, requestId: input.requestId, costNano: cost.costNano.toString() }, 'settle refused for good; left unresolved for an operator');
      return this.unresolve(input, `settle_rejected:${refusal}`);
    }
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

  /** If this write fails the caller defers and retries it like a settle (it is idempotent). */
  private async unresolve(input: SettleInput, reason: string): Promise<SettleResult> {
    if (!(await requests.markUnresolved(this.pool, input.requestId, reason))) {
      // Already closed elsewhere (settled by a reconciler, or marked before): nothing to do.
      this.metrics.settles.inc({ outcome: 'already_settled' });
      return 'already_settled';
    }
    this.metrics.settles.inc({ outcome: 'unresolved' });
    return 'unresolved';
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
    this.log[level]({ err: error, requestId: input.requestId, attempt, delayMs, costNano: isRejectedCost(input.cost) ? null : input.cost.costNano.toString() },
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

/**
 * A settle failure that retrying cannot fix: Postgres refused the data (class 22, e.g. 22003
 * numeric out of range) or a constraint (class 23), or the error is not from the database at
 * all (a bug). Returns what goes into the request's reason; null for anything transient.
 */
function permanentRefusal(error: unknown): string | null {
  if (isDatabaseUnavailable(error)) return null;
  const state = sqlState(error);
  if (state === undefined) return 'internal_error';
  return state.startsWith('22') || state.startsWith('23') ? state : null;
}
