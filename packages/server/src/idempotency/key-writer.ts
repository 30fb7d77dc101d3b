import { isDatabaseUnavailable } from '@metergate/db';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

const RETRY_DELAYS_MS = [250, 1_000, 5_000, 15_000, 30_000];

/**
 * Writes an idempotency key's final state (completed, or released). The first attempt is
 * awaited (the response's end waits for it); if the database cannot take it, it is retried in
 * the background until it lands or the process stops. A key left `running` by a replica that
 * died is finished by the reconciler (released, or answered "interrupted").
 */
export class KeyWriter {
  readonly #retrying = new Map<string, NodeJS.Timeout>();

  constructor(private readonly metrics: Metrics, private readonly log: Logger) {}

  get pendingRetries(): number { return this.#retrying.size; }

  async write(id: string, what: 'stored' | 'released', op: () => Promise<unknown>): Promise<void> {
    try {
      await op();
      this.metrics.idempotency.inc({ outcome: what });
    } catch (error) {
      this.retry(id, what, op, 0, error);
    }
  }

  async drain(deadlineMs: number): Promise<number> {
    const until = Date.now() + deadlineMs;
    while (this.#retrying.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    return this.#retrying.size;
  }

  stop(): void {
    for (const timer of this.#retrying.values()) clearTimeout(timer);
    this.#retrying.clear();
  }

  private retry(id: string, what: string, op: () => Promise<unknown>, attempt: number, error: unknown): void {
    const delayMs = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)]!;
    this.metrics.idempotency.inc({ outcome: `${what}_deferred` });
    this.log[isDatabaseUnavailable(error) ? 'warn' : 'error']({ err: error, key: id, attempt, delayMs }, 'idempotency key write failed; retried');
    const timer = setTimeout(() => {
      op().then(
        () => { this.#retrying.delete(id); this.metrics.idempotency.inc({ outcome: what }); },
        (retryError: unknown) => this.retry(id, what, op, attempt + 1, retryError),
      );
    }, delayMs);
    timer.unref();
    this.#retrying.set(id, timer);
  }
}
