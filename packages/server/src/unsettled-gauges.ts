import { performance } from 'node:perf_hooks';
import type { Logger } from './log.js';

export interface UnsettledRow { state: string; count: number; oldestAgeS: number; heldNano: bigint }

/**
 * The database-wide unsettled-request gauges, read by a background timer instead of once per
 * scrape: any number of scrapers (Prometheus, dashboards, a hostile client) then cost the
 * database one small query per interval. Ages keep growing between refreshes (the snapshot's
 * age is added at read time). While the database cannot be read the gauges are empty, as a
 * scrape then always answered, rather than showing old numbers as current.
 */
export class UnsettledGauges {
  #rows: UnsettledRow[] = [];
  #takenAtMs = performance.now();
  #timer: NodeJS.Timeout | null = null;
  #refreshing: Promise<void> | null = null;

  constructor(
    private readonly read: () => Promise<UnsettledRow[]>,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    void this.refresh();
    this.#timer = setInterval(() => void this.refresh(), this.intervalMs);
    this.#timer.unref();
  }

  /** No further refreshes. One still running is not awaited: a hung database must not hold up shutdown. */
  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** The last snapshot, ages advanced to now. */
  rows(): UnsettledRow[] {
    const sinceS = (performance.now() - this.#takenAtMs) / 1000;
    return this.#rows.map((row) => ({ ...row, oldestAgeS: row.oldestAgeS + sinceS }));
  }

  /** One read at a time: a slow database does not pile refreshes up. */
  refresh(): Promise<void> {
    this.#refreshing ??= this.read().then(
      (rows) => { this.#rows = rows; },
      (error: unknown) => {
        this.#rows = [];
        this.log.debug({ err: error }, 'unsettled gauges not refreshed: database unreachable');
      },
    ).finally(() => {
      this.#takenAtMs = performance.now();
      this.#refreshing = null;
    });
    return this.#refreshing;
  }
}
