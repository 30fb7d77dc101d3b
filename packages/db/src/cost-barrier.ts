import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { CodedError } from './coded-error.js';
import { costLockKey } from './lock-key.js';
import { prepared } from './sql/prepared.js';
import { sqlState, SqlState } from './pg-errors.js';
import { acquireClient, PoolTimeoutError } from './pools.js';

export interface CostBarrierOptions {
  /** The lock-holder pool; settles must use another pool (see pools.ts). */
  pool: pg.Pool;
  /** Longest wait for a free lock-holder client before answering "busy". */
  acquireTimeoutMs: number;
  /** Postgres `lock_timeout` while waiting for the user's advisory lock (other replicas). */
  lockTimeoutMs: number;
  /** Longest in-process wait behind the same user's earlier callers. */
  queueWaitMs: number;
  /** Same-user callers allowed to wait in this process; more are turned away at once. */
  queueDepthMax: number;
  /**
   * `idle_in_transaction_session_timeout` of the holder's transaction: if this process hangs,
   * Postgres ends the session and frees the lock. Must exceed the longest upstream call.
   */
  holdMsMax: number;
  onLockWait?: (seconds: number) => void;
  /** How long a serialize-mode holder kept the user's lock (acquired to COMMIT/ROLLBACK). */
  onLockHeld?: (seconds: number) => void;
  /** The holder's COMMIT failed after fn succeeded (its session was ended under it). */
  onHolderLost?: (error: unknown, userId: string) => void;
}

const RETRY_AFTER_MS_MAX = 30_000;

export type BarrierBusyReason = 'queue_full' | 'queue_timeout' | 'pool_timeout' | 'lock_timeout';

export class BarrierBusyError extends CodedError<'barrier_busy'> {
  constructor(readonly reason: BarrierBusyReason, readonly retryAfterS: number) {
    super('barrier_busy', `cost barrier busy (${reason})`);
  }
}

/**
 * The caller went away while waiting (in the queue, for a pool client, or for the lock): the
 * call is not made, nothing is admitted or held.
 */
export class CallAbandonedError extends CodedError<'call_abandoned'> {
  constructor(readonly stage: 'queue' | 'pool' | 'lock') {
    super('call_abandoned', `the caller left while waiting (${stage})`);
  }
}

export interface LockedContext {
  /** The pinned client inside the lock transaction: use it for the admission read only. */
  readonly client: pg.PoolClient;
  /**
   * Runs one statement as the last of the lock transaction and commits it in the same round
   * trip (the lock pool pipelines): the call's settle and the release of the user's lock land
   * together, with no write-pool client and no separate COMMIT. At most once; afterwards the
   * lock is released. If the statement fails, that COMMIT rolls the transaction back (the
   * statement's error is thrown, the lock is released all the same); if the COMMIT itself
   * fails, its error is thrown and whether the statement landed is unknown (retry it: it must
   * be idempotent, as the settle is).
   */
  readonly commitWith: <R extends pg.QueryResultRow>(query: pg.QueryConfig) => Promise<pg.QueryResult<R>>;
}

/** The lock transaction of one holder: ended by commitWith, or by the barrier after fn. */
class LockTransaction implements LockedContext {
  ended = false;
  /** Set when commitWith's COMMIT failed: the client is then destroyed, not reused. */
  commitError: Error | undefined;

  constructor(readonly client: pg.PoolClient, private readonly onHolderLost: (error: unknown) => void) {}

  readonly commitWith = async <R extends pg.QueryResultRow>(query: pg.QueryConfig): Promise<pg.QueryResult<R>> => {
    assert(!this.ended, 'the lock transaction has already ended');
    this.ended = true;
    const [statement, commit] = await pipelined<R>(this.client, query, 'commit');
    if (commit.status === 'rejected') {
      this.commitError = commit.reason instanceof Error ? commit.reason : new Error(String(commit.reason));
      this.onHolderLost(commit.reason);
      throw commit.reason;
    }
    if (statement.status === 'rejected') throw statement.reason;
    return statement.value;
  };
}

interface Chain { tail: Promise<void>; members: number }

/**
 * Serializes validate → upstream → save per user: across replicas with a transaction-level
 * advisory lock, within this process with a promise chain, so at most one pool client per
 * active user is pinned while same-user callers wait in memory.
 */
export class CostBarrier {
  readonly #chains = new Map<string, Chain>();
  #queued = 0;
  #pinned = 0;

  constructor(private readonly options: CostBarrierOptions) {
    assert(options.holdMsMax > options.lockTimeoutMs, 'holdMsMax must exceed lockTimeoutMs');
  }

  /** Callers waiting behind a same-user predecessor in this process. */
  get queued(): number { return this.#queued; }
  /** Lock-holder clients checked out of the pool right now. */
  get pinned(): number { return this.#pinned; }
  /** Users with a chain entry (0 when idle: the map never leaks). */
  get activeUsers(): number { return this.#chains.size; }

  /** True when some call of this user is running or waiting in this process. */
  contended(userId: string): boolean {
    return (this.#chains.get(userId)?.members ?? 0) > 0;
  }

  /**
   * Serialize mode: fn runs holding the user's advisory lock in a pinned lock-pool client,
   * after every earlier same-user caller in this process. `signal` (the client left) stops the
   * wait at the next stage boundary with CallAbandonedError; fn is then never called.
   */
  async withUserCostLock<T>(userId: string, fn: (ctx: LockedContext) => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.inChain(userId, this.options.queueDepthMax, signal, () => this.runLocked(userId, fn, signal));
  }

  private async inChain<T>(userId: string, depthMax: number, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    const chain = this.#chains.get(userId) ?? { tail: Promise.resolve(), members: 0 };
    if (chain.members > depthMax) {
      throw new BarrierBusyError('queue_full', this.retryAfterS('queue_full'));
    }
    const previous = chain.tail;
    let done!: () => void;
    const mine = new Promise<void>((resolve) => { done = resolve; });
    // The next caller waits for both: if this one gives up early, order is still kept.
    chain.tail = previous.then(() => mine);
    chain.members += 1;
    this.#chains.set(userId, chain);
    try {
      await this.waitTurn(previous, signal);
      return await fn();
    } finally {
      done();
      chain.members -= 1;
      if (chain.members === 0) this.#chains.delete(userId);
    }
  }

  private async waitTurn(previous: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
    this.#queued += 1;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      await Promise.race([
        previous,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new BarrierBusyError('queue_timeout', this.retryAfterS('queue_timeout'))), this.options.queueWaitMs);
          onAbort = () => reject(new CallAbandonedError('queue'));
          if (signal?.aborted === true) onAbort();
          else signal?.addEventListener('abort', onAbort, { once: true });
        }),
      ]);
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
      this.#queued -= 1;
    }
  }

  private async runLocked<T>(userId: string, fn: (ctx: LockedContext) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const client = await this.acquire();
    this.#pinned += 1;
    let broken: Error | undefined;
    // pg-pool listens for errors on idle clients only: without this, a holder's session ended
    // by Postgres (restart, pg_terminate_backend, idle_in_transaction_session_timeout) emits an
    // unhandled 'error' that kills the process. The next query on the client fails too; that
    // is where the loss is handled (rollback/commit below), so here it is only remembered.
    let sessionError: Error | undefined;
    const onSessionError = (error: Error): void => { sessionError ??= error; };
    client.on('error', onSessionError);
    let lockedAt: number | null = null;
    const txn = new LockTransaction(client, (error) => this.options.onHolderLost?.(error, userId));
    try {
      let result: T;
      try {
        if (aborted(signal)) throw new CallAbandonedError('pool');
        await this.lock(client, userId);
        lockedAt = performance.now();
        if (aborted(signal)) throw new CallAbandonedError('lock');
        result = await fn(txn);
      } catch (error) {
        broken = txn.ended ? txn.commitError : await rollback(client);
        throw error;
      }
      broken = txn.ended ? txn.commitError : await this.commit(client, userId);
      return result;
    } finally {
      if (lockedAt !== null) this.options.onLockHeld?.((performance.now() - lockedAt) / 1000);
      client.removeListener('error', onSessionError);
      this.#pinned -= 1;
      // A client whose session errored, or whose rollback or commit failed, is destroyed.
      client.release(broken ?? sessionError);
    }
  }

  private async acquire(): Promise<pg.PoolClient> {
    try {
      return await acquireClient(this.options.pool, 'lock', this.options.acquireTimeoutMs);
    } catch (error) {
      if (error instanceof PoolTimeoutError) throw new BarrierBusyError('pool_timeout', this.retryAfterS('pool_timeout'));
      throw error;
    }
  }

  private async lock(client: pg.PoolClient, userId: string): Promise<void> {
    const { lockTimeoutMs, holdMsMax } = this.options;
    try {
      const started = performance.now();
      // One round trip on the lock pool's pipelining clients (pools.ts): BEGIN and the lock
      // statement are written together, each with its own Sync, so the lock waits for no
      // extra round trip (a client that does not pipeline just takes two). Within the lock
      // statement the select list is evaluated left to right, so both limits are in force
      // (transaction-local) before the lock is requested.
      const [begun, locked] = await pipelined(client, 'begin', prepared('cost_lock',
        `select set_config('lock_timeout', $2::text, true),
                set_config('idle_in_transaction_session_timeout', $3::text, true),
                pg_advisory_xact_lock($1::bigint)`,
        [costLockKey(userId).toString(), String(lockTimeoutMs), String(holdMsMax)],
      ));
      if (begun.status === 'rejected') throw begun.reason;
      if (locked.status === 'rejected') throw locked.reason;
      this.options.onLockWait?.((performance.now() - started) / 1000);
    } catch (error) {
      // The pool's statement_timeout may be shorter than lock_timeout (or cancel the wait
      // first when they are equal): either way the lock was not had in time, so "busy".
      const state = sqlState(error);
      if (state === SqlState.lockNotAvailable || state === SqlState.queryCanceled) {
        throw new BarrierBusyError('lock_timeout', this.retryAfterS('lock_timeout'));
      }
      throw error;
    }
  }

  /** A failed COMMIT after fn succeeded means the session died; its lock died with it. */
  private async commit(client: pg.PoolClient, userId: string): Promise<Error | undefined> {
    try {
      await client.query('commit');
      return undefined;
    } catch (error) {
      this.options.onHolderLost?.(error, userId);
      return error instanceof Error ? error : new Error(String(error));
    }
  }

  /**
   * A full lock pool frees a client as soon as any user's call ends, so retry about one
   * acquire wait later; a busy user frees its lock only when its own call ends, which the
   * lock wait bounds (capped: a client should not be told to wait minutes).
   */
  private retryAfterS(reason: BarrierBusyReason): number {
    const waitMs = reason === 'pool_timeout' ? this.options.acquireTimeoutMs : Math.min(this.options.lockTimeoutMs, RETRY_AFTER_MS_MAX);
    return Math.max(1, Math.ceil(waitMs / 1000));
  }
}

/**
 * Two queries in one socket write: on a pipelining client (the lock pool) both are submitted
 * at once, so corking the socket around them makes one write (one syscall) instead of two.
 * A client that does not pipeline sends the second after the first is answered.
 */
async function pipelined<R extends pg.QueryResultRow = pg.QueryResultRow>(client: pg.PoolClient, first: string | pg.QueryConfig, second: string | pg.QueryConfig):
  Promise<[PromiseSettledResult<pg.QueryResult<R>>, PromiseSettledResult<pg.QueryResult>]> {
  const stream = client.connection.stream;
  stream.cork();
  let answers: [Promise<pg.QueryResult<R>>, Promise<pg.QueryResult>];
  try {
    answers = [client.query<R>(first), client.query(second)];
  } finally {
    stream.uncork();
  }
  return Promise.allSettled(answers);
}

/** A function, not an inline check: the signal changes across awaits. */
function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

/** Returns an error when the rollback failed, so the caller destroys the client. */
async function rollback(client: pg.PoolClient): Promise<Error | undefined> {
  try {
    await client.query('rollback');
    return undefined;
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}
