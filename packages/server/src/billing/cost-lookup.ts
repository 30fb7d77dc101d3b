import { requests } from '@metergate/db';
import type pg from 'pg';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { OpenRouterClient } from '../upstream/openrouter.js';
import type { Settler } from './settler.js';
import { readBody } from '../upstream/read-body.js';
import { costFromGeneration, type UsageCost } from './usage-cost.js';

export type LookupResult = { found: UsageCost } | { missing: 'not_found' | 'failed' };

export interface CostLookupLimits {
  /** Background lookups at once; past it a request is handed to the reconciler at once. */
  tasksMax: number;
  attemptsMax: number;
  backoffMs: number;
  requestTimeoutMs: number;
  /** Costs above this are not charged automatically (README, "Money"). */
  callCostMaxNano: bigint;
}

const BACKOFF_CAP_MS = 30_000;
const GENERATION_BYTES_MAX = 1024 * 1024;

/**
 * Finds the cost of a generation whose response carried none, at `/generation?id=`, with
 * bounded retries and exponential backoff. It runs after the cost barrier is released, so no
 * pool client or lock is held while it waits. What it cannot find stays `awaiting_cost` in the
 * database and is handed to the reconciler (next_lookup_at = now), which also takes over
 * whatever this process leaves behind when it dies or shuts down.
 */
export class CostLookup {
  readonly #running = new Set<Promise<void>>();
  readonly #stop = new AbortController();

  constructor(
    private readonly upstream: OpenRouterClient,
    private readonly settler: Settler,
    private readonly pool: pg.Pool,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly limits: CostLookupLimits,
  ) {}

  get running(): number { return this.#running.size; }

  /** Starts looking in the background; the request is already marked awaiting_cost. */
  schedule(requestId: string, userId: string, generationId: string): void {
    if (this.#running.size >= this.limits.tasksMax) {
      // Bounded: the reconciler (on any replica) looks it up instead, with its own backoff.
      this.metrics.retryGivenUp.inc({ queue: 'cost_lookup', reason: 'full' });
      this.log.warn({ requestId, generationId, running: this.#running.size }, 'too many cost lookups running; handed to the reconciler');
      void this.handToReconciler(requestId, generationId);
      return;
    }
    const task = this.resolve(requestId, userId, generationId)
      .catch((error: unknown) => this.log.error({ err: error, requestId }, 'cost lookup crashed; the reconciler will retry'))
      .finally(() => {
        this.#running.delete(task);
        this.metrics.costLookupsRunning.set(this.#running.size);
      });
    this.#running.add(task);
    this.metrics.costLookupsRunning.set(this.#running.size);
  }

  /** Due at once; if even that fails the row is awaiting_cost already and due after budgetMs. */
  private async handToReconciler(requestId: string, generationId: string): Promise<void> {
    await requests.markAwaitingCost(this.pool, requestId, { generationId, reason: null, nextLookupAt: new Date() })
      .catch((error: unknown) => this.log.warn({ err: error, requestId }, 'could not hand the lookup over now; the reconciler takes it when due'));
  }

  /** Waits (bounded) for background lookups, for graceful shutdown. */
  async drain(deadlineMs: number): Promise<void> {
    const deadline = new Promise((resolve) => setTimeout(resolve, deadlineMs).unref());
    await Promise.race([Promise.allSettled([...this.#running]), deadline]);
  }

  /** One lookup: found, not there (yet), or the upstream failed. */
  async lookupOnce(generationId: string): Promise<LookupResult> {
    const abort = AbortSignal.timeout(this.limits.requestTimeoutMs);
    try {
      const response = await this.upstream.generation(generationId, abort);
      const text = (await readBody(response.body, GENERATION_BYTES_MAX)).toString('utf8');
      if (response.status === 404) return this.outcome({ missing: 'not_found' });
      if (response.status !== 200) return this.outcome({ missing: 'failed' });
      const data = (JSON.parse(text) as { data?: Record<string, unknown> }).data;
      const cost = data === undefined ? null : costFromGeneration(data, this.limits.callCostMaxNano);
      return this.outcome(cost === null ? { missing: 'failed' } : { found: cost });
    } catch (error) {
      this.log.warn({ err: error, generationId }, 'generation lookup failed');
      return this.outcome({ missing: 'failed' });
    }
  }

  private async resolve(requestId: string, userId: string, generationId: string): Promise<void> {
    for (let attempt = 0; attempt < this.limits.attemptsMax; attempt += 1) {
      await sleep(this.backoffMs(attempt), this.#stop.signal);
      if (this.#stop.signal.aborted) break;
      const result = await this.lookupOnce(generationId);
      if ('found' in result) {
        await this.settler.settle({ requestId, userId, generationId, cost: result.found });
        return;
      }
    }
    const handedOff = this.#stop.signal.aborted ? 'shutting down' : `${this.limits.attemptsMax} attempts`;
    if (!this.#stop.signal.aborted) this.metrics.retryGivenUp.inc({ queue: 'cost_lookup', reason: 'attempts' });
    this.log.warn({ requestId, generationId, after: handedOff }, 'cost not found yet; handed to the reconciler');
    // Due at once: the reconciler (on any replica) carries on with its own bounded backoff.
    await requests.markAwaitingCost(this.pool, requestId, { generationId, reason: null, nextLookupAt: new Date() });
  }

  /**
   * How long the in-process attempts take at most (their backoffs plus one lookup timeout):
   * the reconciler leaves an awaiting_cost request alone this long.
   */
  get budgetMs(): number {
    let total = this.limits.requestTimeoutMs;
    for (let attempt = 0; attempt < this.limits.attemptsMax; attempt += 1) total += this.backoffMs(attempt);
    return total;
  }

  /** Shutdown: pending lookups stop waiting and hand their requests to the reconciler. */
  handOff(): void {
    this.#stop.abort();
  }

  private backoffMs(attempt: number): number {
    return Math.min(this.limits.backoffMs * 2 ** attempt, BACKOFF_CAP_MS);
  }

  private outcome(result: LookupResult): LookupResult {
    this.metrics.costLookups.inc({ outcome: 'found' in result ? 'found' : result.missing });
    return result;
  }
}

/** Resolves after ms, or at once when the signal aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
