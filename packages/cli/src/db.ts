import type pg from 'pg';
import { CodedError, createPools, inTransaction as transaction } from '@metergate/db';
import { loadCliConfig, type CliConfig } from './config.js';
import { CliError } from './errors.js';

/** Connection limits for one CLI run: a command needs one or two clients and must not hang. */
const CLIENTS_MAX = 2;
const CONNECT_TIMEOUT_MS = 10_000;
// Interactive reads must not run forever; the CSV export streams in batches, each well under it.
const STATEMENT_TIMEOUT_MS = 120_000;
const IDLE_TIMEOUT_MS = 10_000;

export interface Database {
  /** Every query of the CLI runs here (the @metergate/db SQL functions take it as Queryable). */
  readonly pool: pg.Pool;
  readonly config: CliConfig;
}

/**
 * Opens the database for the duration of `fn` and always closes it, so the process exits.
 * The pools come from @metergate/db like the proxy's; the CLI never holds cost-barrier locks,
 * so it only uses the admin pool, planned per query like the proxy's reports (the other pools
 * open no connection until used).
 */
export async function withDatabase<T>(fn: (db: Database) => Promise<T>): Promise<T> {
  const config = loadCliConfig();
  const pools = createPools({
    connectionString: config.databaseUrl, lockPoolSize: 1, writePoolSize: 1, adminPoolSize: CLIENTS_MAX, genericPlans: false,
    connectTimeoutMs: CONNECT_TIMEOUT_MS, statementTimeoutMs: STATEMENT_TIMEOUT_MS, idleTimeoutMs: IDLE_TIMEOUT_MS,
    applicationName: 'metergate-cli',
    // An idle client dropped by the server must not crash the process; the next query reports it.
    onError: () => undefined,
  });
  try {
    return await fn({ pool: pools.admin, config });
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new DatabaseCommandError(config.databaseLabel, error);
  } finally {
    await pools.end();
  }
}

/** Carries where the failure happened (host:port/db, never the password) to main's report. */
export class DatabaseCommandError extends CodedError<'database_command_failed'> {
  constructor(readonly databaseLabel: string, override readonly cause: unknown) {
    super('database_command_failed', cause instanceof Error ? cause.message : String(cause), { cause });
  }
}

/** A transaction on one client: commit when `fn` returns a value, roll back on null or error. */
export function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T | null>): Promise<T | null> {
  // null means "nothing to keep" (not found / conflict): undo whatever ran before the check.
  return transaction(pool, fn, { rollbackWhen: (result) => result === null });
}
