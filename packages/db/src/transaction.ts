import type pg from 'pg';

export interface TransactionOptions<T> {
  /** The statement that opens it, e.g. `begin isolation level repeatable read read only`. */
  readonly begin?: string;
  /** Roll back instead of committing this result (e.g. null for "not found": undo what ran). */
  readonly rollbackWhen?: (result: T) => boolean;
}

/**
 * `run` on a client of its own inside one transaction: commit when it returns, roll back
 * when it throws (or when `rollbackWhen` says so). A client whose rollback failed is in an
 * unknown state (mid-transaction, or its connection gone), so it is destroyed rather than
 * handed to the next caller; the error that caused the rollback is the one rethrown.
 */
export async function inTransaction<T>(pool: pg.Pool, run: (client: pg.PoolClient) => Promise<T>,
  options: TransactionOptions<T> = {}): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query(options.begin ?? 'begin');
    const result = await run(client);
    await client.query(options.rollbackWhen?.(result) === true ? 'rollback' : 'commit');
    return result;
  } catch (error) {
    await client.query('rollback').catch((rollbackError: unknown) => {
      broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
    });
    throw error;
  } finally {
    client.release(broken);
  }
}
