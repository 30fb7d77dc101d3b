import pg from 'pg';
import { CostBarrier, createPools, type CostBarrierOptions, type Pools } from '@metergate/db';

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects if `promise` has not settled within `ms`: every wait in these tests is bounded. */
export async function within<T>(ms: number, promise: Promise<T>, what = 'operation'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves with the outcome instead of throwing, so a test can inspect each caller's own error. */
export async function settle<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, error };
  }
}

/** Deterministic PRNG (mulberry32): property-style loops replay the same cases every run. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A uniformly random bigint in [0, bound) from the PRNG (bound < 2^53 is not assumed). */
export function randomBigint(random: () => number, bound: bigint): bigint {
  const high = BigInt(Math.floor(random() * 2 ** 32));
  const low = BigInt(Math.floor(random() * 2 ** 32));
  return ((high << 32n) | low) % bound;
}

/** One "replica": its own pools (distinct application_name) and its own barrier. */
export interface Replica { pools: Pools; barrier: CostBarrier; appName: string }

export interface ReplicaOverrides extends Partial<CostBarrierOptions> {
  lockPoolSize?: number;
  writePoolSize?: number;
  statementTimeoutMs?: number;
}

export function replica(url: string, name: string, overrides: ReplicaOverrides = {}): Replica {
  const { lockPoolSize = 4, writePoolSize = 4, statementTimeoutMs = 15_000, ...barrierOverrides } = overrides;
  const appName = `mgtest-${name}`;
  const pools = createPools({
    connectionString: url,
    lockPoolSize,
    writePoolSize,
    adminPoolSize: 2,
    connectTimeoutMs: 5_000,
    statementTimeoutMs,
    idleTimeoutMs: 10_000,
    applicationName: appName,
    onError: () => undefined,
  });
  const barrier = new CostBarrier({
    pool: pools.lock,
    acquireTimeoutMs: 3_000,
    lockTimeoutMs: 5_000,
    queueWaitMs: 15_000,
    queueDepthMax: 100,
    holdMsMax: 20_000,
    ...barrierOverrides,
  });
  return { pools, barrier, appName };
}

/** Advisory locks in one database, as pg_locks shows them (bigint keys reassembled). */
export interface AdvisoryLock { key: string; granted: boolean; pid: number; app: string; twoInt4: boolean }

export async function advisoryLocks(pool: pg.Pool): Promise<AdvisoryLock[]> {
  const result = await pool.query<{ key: string; granted: boolean; pid: number; app: string | null; subid: number }>(
    `select ((l.classid::bigint << 32) | l.objid::bigint)::text as key, l.granted, l.pid,
            a.application_name as app, l.objsubid::integer as subid
       from pg_locks l left join pg_stat_activity a on a.pid = l.pid
      where l.locktype = 'advisory'
        and l.database = (select oid from pg_database where datname = current_database())`,
  );
  return result.rows.map((row) => ({ key: row.key, granted: row.granted, pid: row.pid, app: row.app ?? '', twoInt4: row.subid === 2 }));
}

/** Barrier counters, for "the queue map never leaks". */
export function counters(barrier: CostBarrier): { activeUsers: number; queued: number; pinned: number } {
  return { activeUsers: barrier.activeUsers, queued: barrier.queued, pinned: barrier.pinned };
}

export const IDLE = Object.freeze({ activeUsers: 0, queued: 0, pinned: 0 });
