import { isDatabaseUnavailable, PoolTimeoutError, sqlState } from '@metergate/db';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

export type RetryQueueName = 'settle' | 'idempotency_key';

/** Why an entry left the queue without landing. */
export type GiveUpReason = 'attempts' | 'permanent' | 'full';

export interface RetryQueueOptions {
  readonly name: RetryQueueName;
  /** Entries kept at once; past it a failed write is handed off at once. */
  readonly entriesMax: number;
  /** Retries per entry after its first failure; then it is handed off. */
  readonly attemptsMax: number;
  /** Wait before retry n (the last one repeats). */
  readonly delaysMs: readonly number[];
  /**
   * The durable hand-off when giving up (the reconciler takes it from there). Must not
   * reject; it is told the last error.
   */
  readonly handOff: (id: string, reason: GiveUpReason, error: unknown) => Promise<void>;
}

// Worth retrying besides "unreachable": serialization failure, deadlock, lock and statement
// timeouts. Anything else (a constraint, a bad value: a bug) fails the same way every time.
const TRANSIENT_STATES = new Set(['40001', '40P01', '55P03', '57014']);

/** A database error that may go away by itself (outage, overload, contention). */
export function isTransientDbError(error: unknown): boolean {
  if (error instanceof PoolTimeoutError || isDatabaseUnavailable(error)) return true;
  const state = sqlState(error);
  return state !== undefined && TRANSIENT_STATES.has(state);
}

/**
 * In-memory retries of a database write that must land (a settle, an idempotency key's final
 * state), bounded three ways: entries at once, attempts per entry, and transient errors only.
 * Whatever it gives up on is handed off (the request row marked or left for the reconciler),
 * so memory never grows without limit during a long outage and nothing is dropped silently.
 */
export class RetryQueue {
  readonly #entries = new Map<string, NodeJS.Timeout>();
  #stopped = false;

  constructor(private readonly options: RetryQueueOptions, private readonly metrics: Metrics, private readonly log: Logger) {
    assertPositive(options.entriesMax, 'entriesMax');
    assertPositive(options.attemptsMax, 'attemptsMax');
    if (options.delaysMs.length === 0) throw new Error('RetryQueue: delaysMs must not be empty');
    this.gauge();
  }

  get size(): number { return this.#entries.size; }

  /** op failed once with `error`: retry it later, or hand it off now. Never throws. */
  defer(id: string, op: () => Promise<unknown>, error: unknown): void {
    this.retry(id, op, 0, error);
  }

  /** Waits (bounded) until every entry landed or was handed off, for graceful shutdown. */
  async drain(deadlineMs: number): Promise<number> {
    const until = Date.now() + deadlineMs;
    while (this.#entries.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    return this.#entries.size;
  }

  /** Shutdown: no more attempts. What is left stays unsettled in the database for the reconciler. */
  stop(): void {
    this.#stopped = true;
    for (const timer of this.#entries.values()) clearTimeout(timer);
    this.#entries.clear();
    this.gauge();
  }

  private retry(id: string, op: () => Promise<unknown>, attempt: number, error: unknown): void {
    const previous = this.#entries.get(id);
    if (previous !== undefined) clearTimeout(previous);
    this.#entries.delete(id);
    const reason: GiveUpReason | null = !isTransientDbError(error) ? 'permanent'
      : attempt >= this.options.attemptsMax ? 'attempts'
        : this.#entries.size >= this.options.entriesMax ? 'full' : null;
    if (this.#stopped) return this.gauge();
    if (reason !== null) return this.giveUp(id, reason, error, attempt);
    const { delaysMs } = this.options;
    const delayMs = delaysMs[Math.min(attempt, delaysMs.length - 1)]!;
    this.log[isDatabaseUnavailable(error) ? 'warn' : 'error']({ err: error, id, queue: this.options.name, attempt, delayMs },
      'database write failed; retried in memory');
    const timer = setTimeout(() => {
      op().then(
        () => {
          if (this.#entries.get(id) === timer) this.#entries.delete(id);
          this.gauge();
        },
        (retryError: unknown) => { if (this.#entries.get(id) === timer) this.retry(id, op, attempt + 1, retryError); },
      );
    }, delayMs);
    timer.unref();
    this.#entries.set(id, timer);
    this.gauge();
  }

  private giveUp(id: string, reason: GiveUpReason, error: unknown, attempts: number): void {
    this.gauge();
    this.metrics.retryGivenUp.inc({ queue: this.options.name, reason });
    this.log.error({ err: error, id, queue: this.options.name, reason, attempts }, 'gave up retrying in memory; handed to the reconciler');
    this.options.handOff(id, reason, error).catch((handOffError: unknown) => {
      this.log.error({ err: handOffError, id, queue: this.options.name }, 'hand-off failed; the row is left for the reconciler');
    });
  }

  private gauge(): void {
    this.metrics.retryPending.set({ queue: this.options.name }, this.#entries.size);
  }
}

function assertPositive(value: number, name: string): void {
  if (!Number.isInteger(value) || value < 1) throw new Error(`RetryQueue: ${name} must be a positive integer, got ${value}`);
}
