import { requests, type ClaimedRequest } from '@metergate/db';
import type pg from 'pg';
import type { CostLookup } from '../billing/cost-lookup.js';
import type { Settler } from '../billing/settler.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { nextLookupDelayMs, reconcileOutcome, type ReconcileOutcome } from './policy.js';

export interface ReconcilerOptions {
  intervalMs: number;
  leaseMs: number;
  /** Requests handled per pass at most. */
  batchMax: number;
  /** Requests claimed and looked up at once; the claim covers one such round only. */
  concurrency: number;
  /** How long a claim hides a row from other reconcilers: more than one lookup + settle. */
  claimMs: number;
  /** An in_flight request older than this is taken even from a live replica. */
  inFlightMsMax: number;
  /** How long this replica's own heartbeats have been landing without a break (Heartbeat.upForMs). */
  upForMs: () => number;
  /** Marks what in-memory settles gave up on (while the database was away) for this pass. */
  flushHandOffs: () => Promise<void>;
  backoffMs: number;
  backoffMsMax: number;
  attemptsMax: number;
  ageMsMax: number;
}

export interface PassSummary {
  claimed: number;
  outcomes: Partial<Record<ReconcileOutcome, number>>;
}

/**
 * Unresolved requests with a generation id are looked up again every RECONCILE_BACKOFF_MAX_MS
 * until they are this old (a generation that /generation still cannot find after a week will
 * not appear): a late answer from upstream then settles them without an operator.
 */
export const UNRESOLVED_RETRY_AGE_MAX_MS = 7 * 86_400_000;

/**
 * Also run once per pass (expired idempotency keys, rows of long-dead replicas, ...);
 * judgeHeartbeats: whether a stale heartbeat may be taken as a dead owner (see judgeHeartbeats).
 */
export type Housekeeping = (judgeHeartbeats: boolean) => Promise<void>;

/**
 * Settles what nobody else will: requests whose owner replica is gone (heartbeat older than the
 * lease) and requests whose cost lookup is due. Every replica runs one; they never work on the
 * same row (claims with FOR UPDATE SKIP LOCKED that also push next_lookup_at forward), and a
 * settle that races another one lands once (settleUsage's state guard and unique request_id).
 * Lookups run after the claim committed, holding no lock and no pool client.
 */
export class Reconciler {
  #timer: NodeJS.Timeout | null = null;
  #pass: Promise<unknown> | null = null;
  #stopped = false;
  #judging: boolean | null = null;

  constructor(
    private readonly pool: pg.Pool,
    private readonly costLookup: CostLookup,
    private readonly settler: Settler,
    private readonly housekeeping: Housekeeping,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly options: ReconcilerOptions,
  ) {}

  start(): void {
    this.schedule(this.jittered());
  }

  /** No new pass; waits (bounded) for the one running. */
  async stop(deadlineMs: number): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    const deadline = new Promise((resolve) => setTimeout(resolve, deadlineMs).unref());
    await Promise.race([this.#pass, deadline]);
  }

  /** One pass: claim rounds until nothing is due or batchMax is reached, then housekeeping. */
  async runOnce(): Promise<PassSummary> {
    const summary: PassSummary = { claimed: 0, outcomes: {} };
    await this.options.flushHandOffs();
    const judgeHeartbeats = this.judgeHeartbeats();
    while (!this.#stopped && summary.claimed < this.options.batchMax) {
      const want = Math.min(this.options.concurrency, this.options.batchMax - summary.claimed);
      const claimed = await requests.claimForReconcile(this.pool, {
        leaseMs: this.options.leaseMs, claimMs: this.options.claimMs, batchMax: want, inFlightMsMax: this.options.inFlightMsMax,
        judgeHeartbeats,
      });
      summary.claimed += claimed.length;
      const outcomes = await Promise.all(claimed.map((request) => this.reconcileOne(request)));
      for (const outcome of outcomes) {
        summary.outcomes[outcome] = (summary.outcomes[outcome] ?? 0) + 1;
        this.metrics.reconcilerOutcomes.inc({ outcome });
      }
      if (claimed.length < want) break;
    }
    await this.housekeeping(judgeHeartbeats);
    return summary;
  }

  /**
   * A heartbeat older than the lease means a dead owner only if the database has been
   * reachable for a whole lease: after an outage every heartbeat is stale, and live replicas'
   * beats land only some time after it ends (the first pass may well come first). So until
   * this replica's own beats have landed unbroken for a lease, owners are judged only by what
   * is explicit (their row deleted, a restart under the same id, a call older than any may last).
   */
  private judgeHeartbeats(): boolean {
    const judging = this.options.upForMs() >= this.options.leaseMs;
    if (judging !== this.#judging) {
      this.#judging = judging;
      this.metrics.reconcilerJudging.set(judging ? 1 : 0);
      this.log.info({ judging }, judging ? 'heartbeats landing for a lease: stale owners are taken for dead again'
        : 'own heartbeat not landing unbroken for a lease: no owner is taken for dead by its heartbeat');
    }
    return judging;
  }

  private schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      const pass = this.runOnce().then(
        (summary) => {
          this.metrics.reconcilerRuns.inc({ outcome: 'ok' });
          if (summary.claimed > 0) this.log.info({ ...summary }, 'reconciler pass');
          // A full pass suggests a backlog: go again soon rather than after a whole interval.
          return summary.claimed >= this.options.batchMax ? 0 : this.jittered();
        },
        (error: unknown) => {
          this.metrics.reconcilerRuns.inc({ outcome: 'failed' });
          this.log.warn({ err: error }, 'reconciler pass failed; retrying next interval');
          return this.jittered();
        },
      );
      this.#pass = pass;
      void pass.then((next) => this.schedule(next));
    }, delayMs);
    this.#timer.unref();
  }

  /** ±20 % so that replicas started together do not pass in lockstep. */
  private jittered(): number {
    return Math.round(this.options.intervalMs * (0.8 + Math.random() * 0.4));
  }

  private async reconcileOne(request: ClaimedRequest): Promise<ReconcileOutcome> {
    try {
      return await this.settleOrReschedule(request);
    } catch (error) {
      // The claim expires after claimMs and the row is taken up again.
      this.log.warn({ err: error, requestId: request.id }, 'reconciling a request failed; retried after the claim expires');
      return 'error';
    }
  }

  private async settleOrReschedule(request: ClaimedRequest): Promise<ReconcileOutcome> {
    if (request.generationId === null) {
      // Nothing names the generation, so nobody can look its cost up: an operator must.
      const reason = request.state !== 'in_flight' ? 'no_generation_id'
        : request.ownerAlive ? 'in_flight_too_long_without_generation_id' : 'owner_died_before_generation_id';
      await requests.markUnresolved(this.pool, request.id, reason);
      this.log.error({ requestId: request.id, userId: request.userId, reason }, 'request unresolved: no generation id to look up');
      return 'unresolved_no_generation_id';
    }
    const found = await this.costLookup.lookupOnce(request.generationId);
    if ('found' in found) {
      const result = await this.settler.settle({
        requestId: request.id, userId: request.userId, generationId: request.generationId, cost: found.found,
      });
      if (result !== 'deferred' || request.lookupAttempts < this.options.attemptsMax) return result;
      // The cost is known but will not land (each claim's settle was given up): after as many
      // claims as a lookup gets, it is an operator's, with the cost in the log. A settle that
      // lands later still wins (the settle statement accepts an unresolved request).
      await requests.markUnresolved(this.pool, request.id, 'settle_failed', new Date(Date.now() + this.options.backoffMsMax));
      this.log.error({ requestId: request.id, userId: request.userId, generationId: request.generationId,
        cost: 'costNano' in found.found ? found.found.costNano.toString() : found.found.raw, attempts: request.lookupAttempts }, 'request unresolved: its settle keeps failing');
      return 'unresolved_settle_failed';
    }
    if (request.state === 'unresolved') {
      // Still not found: look again rarely, and stop after UNRESOLVED_RETRY_AGE_MAX_MS (an
      // operator settles or voids it: POST /admin/requests/:id/settle | void).
      const next = request.ageMs < UNRESOLVED_RETRY_AGE_MAX_MS ? new Date(Date.now() + this.options.backoffMsMax) : null;
      await requests.rescheduleUnresolved(this.pool, request.id, next);
      return 'retry_later';
    }
    const decision = reconcileOutcome(request, this.options);
    if (decision === 'unresolved_exhausted') {
      await requests.markUnresolved(this.pool, request.id, 'cost_lookup_exhausted', new Date(Date.now() + this.options.backoffMsMax));
      this.log.error({ requestId: request.id, userId: request.userId, attempts: request.lookupAttempts }, 'request unresolved: cost lookup exhausted');
      return decision;
    }
    await requests.markAwaitingCost(this.pool, request.id, {
      generationId: null,
      reason: request.state !== 'in_flight' ? null : request.ownerAlive ? 'in_flight_too_long' : 'owner_gone',
      nextLookupAt: new Date(Date.now() + nextLookupDelayMs(request.lookupAttempts, this.options)),
    });
    return decision;
  }
}
