import assert from 'node:assert/strict';

export interface StatementBatcherOptions {
  /** Items per statement, at most. */
  batchMax: number;
  /** Statements in flight at once; items arriving meanwhile wait and go out together. */
  batchesInFlightMax: number;
}

export interface BatchStatement<In, Out> {
  /** One statement for all the items, results in their order; all of it lands or none. */
  many(items: In[]): Promise<Out[]>;
  /** The same for one item: what a failed batch falls back to, item by item. */
  one(item: In): Promise<Out>;
  /** Items share a statement only when their groups are equal (e.g. a settle's clock). */
  group(item: In): string;
  /** A batch failed and its items are being retried alone: told so that it is seen (log, metric). */
  batchFailed(error: unknown, size: number): void;
  /** A statement left with this many items (a metric). */
  sent?(size: number): void;
}

interface Waiting<In, Out> {
  item: In;
  resolve(out: Out): void;
  reject(error: unknown): void;
}

/**
 * Group commit, done by the application: an item never waits for a batch to fill. It goes out
 * at once when fewer than `batchesInFlightMax` statements are in flight, and otherwise leaves
 * with whatever queued behind those statements. At c=50 that turns about fifty statements,
 * commits and round trips into a handful; at c=1 it changes nothing.
 *
 * When a batch fails, each of its items is tried again alone, so one item the database
 * refuses (or a deadlock) fails only that item, exactly as it would have without batching.
 * What waits here is bounded by what feeds it: one item per call in flight, and calls are
 * bounded by the pools and queues in front of them.
 */
export class StatementBatcher<In, Out> {
  readonly #waiting: Array<Waiting<In, Out>> = [];
  #inFlight = 0;

  constructor(private readonly statement: BatchStatement<In, Out>, private readonly options: StatementBatcherOptions) {
    assert(options.batchMax >= 1 && options.batchesInFlightMax >= 1, 'batchMax and batchesInFlightMax must be positive');
  }

  get waiting(): number { return this.#waiting.length; }

  submit(item: In): Promise<Out> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ item, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#inFlight < this.options.batchesInFlightMax && this.#waiting.length > 0) {
      const batch = this.#take();
      this.#inFlight += 1;
      void this.#run(batch).finally(() => {
        this.#inFlight -= 1;
        this.#pump();
      });
    }
  }

  /** The oldest waiting items of the oldest one's group, at most batchMax; the rest keep their places. */
  #take(): Array<Waiting<In, Out>> {
    const group = this.statement.group(this.#waiting[0]!.item);
    const batch: Array<Waiting<In, Out>> = [];
    const rest: Array<Waiting<In, Out>> = [];
    for (const waiting of this.#waiting) {
      if (batch.length < this.options.batchMax && this.statement.group(waiting.item) === group) batch.push(waiting);
      else rest.push(waiting);
    }
    this.#waiting.splice(0, this.#waiting.length, ...rest);
    return batch;
  }

  async #run(batch: Array<Waiting<In, Out>>): Promise<void> {
    this.statement.sent?.(batch.length);
    if (batch.length === 1) {
      const [only] = batch as [Waiting<In, Out>];
      await this.statement.one(only.item).then(only.resolve, only.reject);
      return;
    }
    let outs: Out[];
    try {
      outs = await this.statement.many(batch.map((waiting) => waiting.item));
    } catch (error) {
      // The batch's error is not any one item's: each item alone gets its own answer.
      this.statement.batchFailed(error, batch.length);
      await Promise.all(batch.map((waiting) => this.statement.one(waiting.item).then(waiting.resolve, waiting.reject)));
      return;
    }
    if (outs.length !== batch.length) {
      const error = new assert.AssertionError({ message: `a batch statement answered ${outs.length} of ${batch.length} items` });
      for (const waiting of batch) waiting.reject(error);
      return;
    }
    batch.forEach((waiting, i) => waiting.resolve(outs[i]!));
  }
}
