import type pg from 'pg';

/** Anything that runs a query: a pool, a pooled client or a bare client. */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;
