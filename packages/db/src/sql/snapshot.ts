import type pg from 'pg';

/**
 * Runs `run` on a client of its own in one read-only, repeatable-read transaction: every
 * statement sees the same snapshot, so concurrent settles cannot make consistent data look
 * inconsistent between two reads. A client whose rollback failed is released as broken.
 */
export async function inReadSnapshot<T>(pool: pg.Pool, run: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('begin isolation level repeatable read read only');
    const result = await run(client);
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback').catch((rollbackError: unknown) => { broken = rollbackError as Error; });
    throw error;
  } finally {
    client.release(broken);
  }
}
