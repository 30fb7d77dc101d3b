import { performance } from 'node:perf_hooks';
import { replicas } from '@metergate/db';
import type pg from 'pg';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

/**
 * Keeps this replica's `replicas` row fresh. Other replicas' reconcilers take a replica whose
 * heartbeat is older than the lease for dead and settle its open requests from the generation
 * lookup, so the beat must go on while a draining replica finishes its streams, and stop (the
 * row deleted) only once nothing of ours is in flight.
 */
export class Heartbeat {
  #timer: NodeJS.Timeout | null = null;
  #beating: Promise<void> | null = null;
  #draining = false;
  /** performance.now() of the last beat that landed, and of the first in its unbroken run. */
  #lastOkAt: number | null = null;
  #upSince = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly replicaId: string,
    private readonly intervalMs: number,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    /** Longest gap between landed beats that still counts as unbroken (see upForMs). */
    private readonly gapMsMax: number = 2 * intervalMs,
  ) {}

  /**
   * How long this replica's beats have been landing without a gap over gapMsMax (0 while in
   * such a gap). After a database outage every heartbeat in the table is stale, and other live
   * replicas' next beats land only some time after the database is back: until this replica
   * has itself been reaching the database for a whole lease, a stale heartbeat proves nothing.
   */
  upForMs(): number {
    const now = performance.now();
    if (this.#lastOkAt === null || now - this.#lastOkAt > this.gapMsMax) return 0;
    return now - this.#upSince;
  }

  /** The first beat is written before the replica takes traffic; a failure there is fatal. */
  async start(): Promise<void> {
    await replicas.registerStart(this.pool, this.replicaId);
    this.landed();
    this.#timer = setInterval(() => void this.beat(), this.intervalMs);
    this.#timer.unref();
  }

  /** Marks the row draining at once (operators see it) and keeps beating. */
  async markDraining(): Promise<void> {
    this.#draining = true;
    await this.beat();
  }

  /** Stops beating and removes the row: what is still open of ours is reconciled at once. */
  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#beating;
    await replicas.removeReplica(this.pool, this.replicaId).catch((error: unknown) => {
      this.log.warn({ err: error }, 'could not remove the replica row; it will be taken for dead after the lease');
    });
  }

  private landed(): void {
    this.metrics.heartbeats.inc({ outcome: 'ok' });
    const now = performance.now();
    if (this.#lastOkAt === null || now - this.#lastOkAt > this.gapMsMax) this.#upSince = now;
    this.#lastOkAt = now;
  }

  private beat(): Promise<void> {
    // A slow database must not pile beats up; the next interval tries again.
    this.#beating ??= replicas.heartbeat(this.pool, this.replicaId, this.#draining).then(
      () => { this.landed(); },
      (error: unknown) => {
        // The database was out of reach: whatever stale heartbeats it shows now may be those
        // of live replicas that could not beat either, so the unbroken run starts over.
        this.#lastOkAt = null;
        this.metrics.heartbeats.inc({ outcome: 'failed' });
        this.log.warn({ err: error }, 'heartbeat failed; other replicas take this one for dead after the lease');
      },
    ).finally(() => { this.#beating = null; });
    return this.#beating;
  }
}
