import { nowMs } from './clock.js';
import type { FinishReason, GenerationRecord } from './types.js';

/** A generation as the simulator tracks it: the public record plus what lookups need. */
export interface Generation {
  readonly record: GenerationRecord;
  readonly providerName: string;
  /** How long GET /generation answers 404 after the end. */
  readonly lookup404Ms: number;
  /** Aborted to stop generating: client gone (when cancellable) or simulator shutdown. */
  readonly stop: AbortController;
  firstTokenAtMs: number | null;
}

export interface Outcome {
  completionTokens: number;
  costNano: bigint;
  upstreamInferenceNano: bigint | null;
  finishReason: FinishReason;
  cancelled: boolean;
}

export interface OpenArgs {
  id: string;
  model: string;
  providerName: string;
  user: string | null;
  stream: boolean;
  promptTokens: number;
  lookup404Ms: number;
  isByok: boolean;
}

/** The simulator's books: every accepted generation, in order of arrival. */
export class Books {
  private list: Generation[] = [];
  private byId = new Map<string, Generation>();
  private readonly running = new Set<Generation>();
  private idleWaiters: Array<() => void> = [];

  open(args: OpenArgs): Generation {
    const record: GenerationRecord = {
      id: args.id, model: args.model, user: args.user, stream: args.stream,
      promptTokens: args.promptTokens, completionTokens: 0, costNano: 0n, isByok: args.isByok, upstreamInferenceNano: null, cancelled: false,
      finishReason: null, startedAtMs: nowMs(), endedAtMs: null, state: 'running',
    };
    const generation: Generation = {
      record, providerName: args.providerName, lookup404Ms: args.lookup404Ms,
      stop: new AbortController(), firstTokenAtMs: null,
    };
    this.list.push(generation);
    this.byId.set(record.id, generation);
    this.running.add(generation);
    return generation;
  }

  /** Closes a generation exactly once; later calls are ignored. */
  settle(generation: Generation, outcome: Outcome): void {
    const { record } = generation;
    if (record.state === 'done') return;
    Object.assign(record, outcome, { endedAtMs: nowMs(), state: 'done' });
    this.running.delete(generation);
    if (this.running.size === 0) this.wakeIdleWaiters();
  }

  find(id: string): Generation | undefined {
    return this.byId.get(id);
  }

  records(): GenerationRecord[] {
    return this.list.map((generation) => ({ ...generation.record }));
  }

  billedNano(filter?: { user?: string }): bigint {
    let total = 0n;
    for (const { record } of this.list) {
      if (filter?.user === undefined || record.user === filter.user) total += record.costNano;
    }
    return total;
  }

  /** Forgets the books; generations still running finish off the books. */
  reset(): void {
    this.list = [];
    this.byId = new Map();
  }

  stopAll(): void {
    for (const generation of this.running) generation.stop.abort();
  }

  whenIdle(timeoutMs: number): Promise<void> {
    if (this.running.size === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`simulator: ${this.running.size} generation(s) still running`));
      }, timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private wakeIdleWaiters(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiters) wake();
  }
}
