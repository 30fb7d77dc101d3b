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

  constructor(
    private readonly pool: pg.Pool,
    private readonly replicaId: string,
    private readonly intervalMs: number,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  /** The first beat is written before the replica takes traffic; a failure there is fatal. */
  async start(): Promise<void> {
    await replicas.registerStart(this.pool, this.replicaId);
    this.metrics.heartbeats.inc({ outcome: 'ok' });
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

  private beat(): Promise<void> {
    // A slow database must not pile beats up; the next interval tries again.
    this.#beating ??= replicas.heartbeat(this.pool, this.replicaId, this.#draining).then(
      () => { this.metrics.heartbeats.inc({ outcome: 'ok' }); },
      (error: unknown) => {
        this.metrics.heartbeats.inc({ outcome: 'failed' });
        this.log.warn({ err: error }, 'heartbeat failed; other replicas take this one for dead after the lease');
      },
    ).finally(() => { this.#beating = null; });
    return this.#beating;
  }
}
