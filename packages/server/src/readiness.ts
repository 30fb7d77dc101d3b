import { pendingMigrations, type Migration } from '@metergate/db';
import type pg from 'pg';
import type { Logger } from './log.js';

export type Readiness = { ready: true } | { ready: false; status: 'migrations_pending'; pending: string[] } | { ready: false; status: 'database_unreachable' };

/**
 * GET /readyz's database check, shared: one probe at a time, its answer reused for cacheMs,
 * so however often load balancers (or anyone) call, the write pool sees at most one probe per
 * period. Draining is checked by the route itself, on every call.
 */
export class ReadinessProbe {
  #last: { atMs: number; value: Readiness } | null = null;
  #running: Promise<Readiness> | null = null;

  constructor(
    private readonly pool: pg.Pool,
    private readonly migrations: readonly Migration[],
    private readonly cacheMs: number,
    private readonly log: Logger,
  ) {}

  check(): Promise<Readiness> {
    const last = this.#last;
    if (last !== null && Date.now() - last.atMs < this.cacheMs) return Promise.resolve(last.value);
    this.#running ??= this.probe().then((value) => {
      this.#last = { atMs: Date.now(), value };
      return value;
    }).finally(() => { this.#running = null; });
    return this.#running;
  }

  private async probe(): Promise<Readiness> {
    try {
      const pending = await pendingMigrations(this.pool, [...this.migrations]);
      return pending.length > 0 ? { ready: false, status: 'migrations_pending', pending } : { ready: true };
    } catch (error) {
      this.log.warn({ err: error }, 'readiness check failed');
      return { ready: false, status: 'database_unreachable' };
    }
  }
}
