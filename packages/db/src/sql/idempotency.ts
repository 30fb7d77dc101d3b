import type { Queryable } from './queryable.js';

export interface NewIdempotencyKey {
  userId: string;
  key: string;
  /** sha256 of the canonical request body (32 bytes). */
  bodyHash: Buffer;
  requestId: string;
  replicaId: string;
  stream: boolean;
  ttlHours: number;
}

export interface StoredResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface IdempotencyRow {
  userId: string;
  key: string;
  bodyHash: Buffer;
  requestId: string;
  replicaId: string;
  stream: boolean;
  state: 'running' | 'done';
  response: StoredResponse | null;
  createdAt: Date;
  expiresAt: Date;
}

/**
 * Takes the key for this attempt: one INSERT ... ON CONFLICT DO NOTHING, so of N concurrent
 * attempts with one key exactly one gets true. An expired row is removed first (the reconciler
 * also sweeps them), so an expired key behaves as a new one.
 */
export async function claimKey(db: Queryable, row: NewIdempotencyKey): Promise<boolean> {
  await db.query(
    'delete from idempotency_keys where user_id = $1::text and key = $2::text and expires_at <= now()',
    [row.userId, row.key],
  );
  const result = await db.query(
    `insert into idempotency_keys (user_id, key, body_hash, request_id, replica_id, stream, state, expires_at)
     values ($1::text, $2::text, $3::bytea, $4::uuid, $5::text, $6::boolean, 'running',
             now() + $7::integer * interval '1 hour')
     on conflict (user_id, key) do nothing`,
    [row.userId, row.key, row.bodyHash, row.requestId, row.replicaId, row.stream, row.ttlHours],
  );
  return result.rowCount === 1;
}

export async function findKey(db: Queryable, userId: string, key: string): Promise<IdempotencyRow | null> {
  const result = await db.query<{
    user_id: string; key: string; body_hash: Buffer; request_id: string; replica_id: string; stream: boolean;
    state: 'running' | 'done'; response_status: number | null; response_headers: Record<string, string> | null;
    response_body: Buffer | null; created_at: Date; expires_at: Date;
  }>(
    `select user_id, key, body_hash, request_id, replica_id, stream, state, response_status, response_headers,
            response_body, created_at, expires_at
       from idempotency_keys where user_id = $1::text and key = $2::text and expires_at > now()`,
    [userId, key],
  );
  const row = result.rows[0];
  if (row === undefined) return null;
  const response = row.response_status === null || row.response_body === null ? null
    : { status: row.response_status, headers: row.response_headers ?? {}, body: row.response_body };
  return {
    userId: row.user_id, key: row.key, bodyHash: row.body_hash, requestId: row.request_id, replicaId: row.replica_id,
    stream: row.stream, state: row.state, response, createdAt: row.created_at, expiresAt: row.expires_at,
  };
}

/**
 * Stores the outcome to replay. Matched by the owning request id, not by state: if a
 * reconciler wrongly took the owner for dead and stored an "interrupted" answer, the real
 * outcome still wins.
 */
export async function completeKey(db: Queryable, owner: { userId: string; key: string; requestId: string }, response: StoredResponse): Promise<boolean> {
  const result = await db.query(
    `update idempotency_keys
        set state = 'done', response_status = $4::integer, response_headers = $5::jsonb, response_body = $6::bytea,
            completed_at = now()
      where user_id = $1::text and key = $2::text and request_id = $3::uuid`,
    [owner.userId, owner.key, owner.requestId, response.status, JSON.stringify(response.headers), response.body],
  );
  return result.rowCount === 1;
}

/** The attempt ended before anything could be charged: the key is free for a retry. */
export async function releaseKey(db: Queryable, owner: { userId: string; key: string; requestId: string }): Promise<boolean> {
  const result = await db.query(
    `delete from idempotency_keys
      where user_id = $1::text and key = $2::text and request_id = $3::uuid and state = 'running'`,
    [owner.userId, owner.key, owner.requestId],
  );
  return result.rowCount === 1;
}

/** Housekeeping: removes up to limit expired keys. */
export async function deleteExpiredKeys(db: Queryable, limit: number): Promise<number> {
  const result = await db.query(
    `delete from idempotency_keys
      where ctid in (select ctid from idempotency_keys where expires_at <= now() limit $1::integer)`,
    [limit],
  );
  return result.rowCount ?? 0;
}

export interface OrphanKeyOptions {
  leaseMs: number;
  /** A running key whose request row never appeared is given up after this long. */
  orphanAgeMs: number;
  /** What a retry is answered when the owner died after the upstream was called. */
  interrupted: StoredResponse;
  limit: number;
  /** Whether a heartbeat older than the lease counts as a dead owner (see ClaimOptions). */
  judgeHeartbeats: boolean;
}

/**
 * Running keys whose attempt can no longer complete its key row (its owner is gone: no
 * heartbeat within the lease, or restarted since the key was taken):
 * - the request failed (nothing charged), or never got a request row while its owner is gone
 *   (or for longer than orphanAgeMs): released, so a retry runs;
 * - the owner replica is gone and the request reached the upstream (any state but failed: it
 *   may have been charged, and the reconciler settles it): done, with the `interrupted` answer,
 *   so a retry never charges twice;
 * - the request was settled or unresolved more than orphanAgeMs ago and the key still runs (its
 *   live owner gave up writing it): done, with the `interrupted` answer.
 */
export async function finishOrphanKeys(db: Queryable, options: OrphanKeyOptions): Promise<{ released: number; interrupted: number }> {
  const released = await db.query(
    `delete from idempotency_keys k
      where k.ctid in (
        select k2.ctid from idempotency_keys k2
          left join requests r on r.id = k2.request_id
          left join replicas p on p.id = k2.replica_id
         where k2.state = 'running'
           and (r.state = 'failed'
                or (r.id is null and (k2.created_at < now() - $2::integer * interval '1 millisecond'
                                      or p.id is null
                                      or ($4::boolean and p.heartbeat_at < now() - $1::integer * interval '1 millisecond')
                                      or k2.created_at < p.started_at)))
         limit $3::integer)`,
    [options.leaseMs, options.orphanAgeMs, options.limit, options.judgeHeartbeats],
  );
  const interrupted = await db.query(
    `update idempotency_keys k
        set state = 'done', response_status = $3::integer, response_headers = $4::jsonb, response_body = $5::bytea,
            completed_at = now()
      where k.ctid in (
        select k2.ctid from idempotency_keys k2
          join requests r on r.id = k2.request_id
          left join replicas p on p.id = k2.replica_id
         where k2.state = 'running' and r.state <> 'failed'
           and (p.id is null or ($6::boolean and p.heartbeat_at < now() - $1::integer * interval '1 millisecond')
                or k2.created_at < p.started_at
                -- its request closed long ago: the owner's key write was given up
                or (r.state in ('settled', 'unresolved') and r.updated_at < now() - $7::integer * interval '1 millisecond'))
         limit $2::integer)`,
    [options.leaseMs, options.limit, options.interrupted.status, JSON.stringify(options.interrupted.headers), options.interrupted.body,
      options.judgeHeartbeats, options.orphanAgeMs],
  );
  return { released: released.rowCount ?? 0, interrupted: interrupted.rowCount ?? 0 };
}
