import assert from 'node:assert/strict';
import pg from 'pg';
import { CodedError } from './coded-error.js';

const POOL_BACKSTOP_SLACK_MS = 1_000;

export interface PoolsOptions {
  connectionString: string;
  /** Clients for cost-barrier lock holders: each active user pins one for its whole call. */
  lockPoolSize: number;
  /** Clients for the rest of the call path (admissions, settles, key lookups, housekeeping). */
  writePoolSize: number;
  /** Clients for operators' queries and changes (reports, exports, the admin API). */
  adminPoolSize: number;
  /**
   * Startup options every session gets (libpq's `options`, e.g. `-c search_path=app`): an
   * `options` parameter of the URL, else PGOPTIONS. The hot pools add their plan mode to it.
   */
  sessionOptions?: string | undefined;
  /**
   * The lock and write pools start their sessions with HOT_SESSION_OPTIONS (default true).
   * Off where nothing is prepared (PG_PREPARED_STATEMENTS=false: PgBouncer in transaction
   * mode, which also refuses an `options` startup parameter it was not told to ignore).
   */
  genericPlans?: boolean;
  connectTimeoutMs: number;
  statementTimeoutMs: number;
  idleTimeoutMs: number;
  applicationName: string;
  onError: (error: Error, pool: PoolName) => void;
}

export type PoolName = 'lock' | 'write' | 'admin' | 'beat';

/**
 * Two pools, never one: a lock holder writes its admission (and retries a failed settle) on a
 * write client, so if lock holders and writes shared a pool, N active users pinning all N
 * clients would deadlock every admission. (Its first settle attempt runs on its own lock
 * client, ending the lock transaction: cost-barrier.ts commitWith.)
 */
export interface Pools {
  readonly lock: pg.Pool;
  readonly write: pg.Pool;
  /**
   * Operators' reports and exports plan every query for its own parameters (the hot pools
   * reuse one generic plan, HOT_SESSION_OPTIONS): a report whose filters are switches
   * (`$1 is null or user_id = $1`) needs the plan that prunes them. A pool of its own also
   * keeps a burst of slow reports from taking the clients settles need.
   */
  readonly admin: pg.Pool;
  /**
   * One client for the replica's heartbeat alone: a write pool saturated by a burst (10,000
   * new users' key lookups in bench:concurrency) made a live replica miss its beats, and other
   * replicas take a replica whose beats stop for dead and reconcile its live calls.
   */
  readonly beat: pg.Pool;
  end(): Promise<void>;
}

export function createPools(options: PoolsOptions): Pools {
  assert(options.lockPoolSize >= 1 && options.writePoolSize >= 1 && options.adminPoolSize >= 1, 'pool sizes must be positive');
  const lock = createPool(options, options.lockPoolSize, 'lock');
  const write = createPool(options, options.writePoolSize, 'write');
  const admin = createPool(options, options.adminPoolSize, 'admin');
  const beat = createPool(options, 1, 'beat');
  return {
    lock,
    write,
    admin,
    beat,
    async end() {
      await Promise.all([lock.end(), write.end(), admin.end(), beat.end()]);
    },
  };
}

/**
 * The call path's statements are named prepared statements (sql/prepared.ts) whose best plan
 * does not depend on the call: one user's row, one request, one key. Left to choose, Postgres
 * planned the admission statement anew on every execution (its custom plans, which prune the
 * parameter switches, look cheaper than the generic one: tests/pools-plans.test.ts), and
 * planning a statement of a dozen CTEs took about 3 ms, more than running it. Measured with
 * `npm run bench -- --barrier reserve --profile`: Postgres CPU per call at c=50 7.3 -> 3.9 ms,
 * 154 -> 229 req/s (README, Benchmark).
 */
export const HOT_SESSION_OPTIONS = '-c plan_cache_mode=force_generic_plan';

/**
 * pg lets a URL's parameters override the config object, so a session option is added by
 * rewriting the URL's `options` (keeping the operator's), or given as config when the
 * connection string is not a URL.
 */
export function connectionWithOptions(connectionString: string, base: string | undefined, extra: string | null):
  { connectionString: string; options?: string } {
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    const options = [base, extra].filter((o) => o !== undefined && o !== null && o !== '').join(' ');
    return options === '' ? { connectionString } : { connectionString, options };
  }
  const own = url.searchParams.get('options') ?? base;
  const options = [own, extra].filter((o) => o !== undefined && o !== null && o !== '').join(' ');
  if (options === '' || options === own) return { connectionString };
  url.searchParams.set('options', options);
  return { connectionString: url.toString() };
}

function createPool(options: PoolsOptions, max: number, name: PoolName): pg.Pool {
  const hot = (name === 'lock' || name === 'write') && options.genericPlans !== false;
  const pool = new pg.Pool({
    ...connectionWithOptions(options.connectionString, options.sessionOptions, hot ? HOT_SESSION_OPTIONS : null),
    max,
    // acquireClient() below enforces the acquire limit and names it (PoolTimeoutError). The
    // driver's own timer also covers callers queued for a busy client, so it must fire
    // strictly later, or it would win the race with a nameless Error; it stays as the
    // backstop for a connect that hangs at the TCP level and for plain pool.query() calls.
    connectionTimeoutMillis: options.connectTimeoutMs + POOL_BACKSTOP_SLACK_MS,
    idleTimeoutMillis: options.idleTimeoutMs,
    application_name: `${options.applicationName}:${name}`,
    statement_timeout: options.statementTimeoutMs,
    // A server that silently drops packets (rather than resetting) must not hang a settle
    // forever: the client gives up shortly after the server-side statement_timeout would.
    query_timeout: options.statementTimeoutMs + POOL_BACKSTOP_SLACK_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    // Lock holders send BEGIN and the lock statement together (cost-barrier.ts): one round
    // trip instead of two on every serialize-mode call. Only this pool: pipelined clients
    // cannot run cursors (the write pool streams CSV exports through pg-cursor).
    pipeline: name === 'lock',
  });
  // An idle client losing its server (Postgres restart) emits here; unhandled it would kill
  // the process. The pool drops that client and connects a new one on the next acquire.
  pool.on('error', (error) => options.onError(error, name));
  return pool;
}

export class PoolTimeoutError extends CodedError<'pool_timeout'> {
  constructor(readonly pool: string, readonly timeoutMs: number) {
    super('pool_timeout', `no ${pool} database client became free within ${timeoutMs} ms`);
  }
}

/**
 * Acquire with a hard deadline of our own, so the caller can tell a timeout from a broken
 * connection without reading error messages. A client that arrives after the deadline is
 * released straight back to the pool.
 */
export async function acquireClient(pool: pg.Pool, name: string, timeoutMs: number): Promise<pg.PoolClient> {
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const pending = pool.connect();
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(new PoolTimeoutError(name, timeoutMs));
    }, timeoutMs);
  });
  pending.then((client) => { if (timedOut) client.release(); }, () => undefined);
  try {
    return await Promise.race([pending, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
