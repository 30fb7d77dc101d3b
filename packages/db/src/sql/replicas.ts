import type { Queryable } from './queryable.js';

/**
 * Liveness of each replica. A replica upserts its row every heartbeat interval; others treat
 * it as gone (and reconcile its open requests) once the heartbeat is older than the lease.
 */
export async function heartbeat(db: Queryable, replicaId: string, draining: boolean): Promise<void> {
  await db.query(
    `insert into replicas (id, draining) values ($1::text, $2::boolean)
     on conflict (id) do update set heartbeat_at = now(), draining = replicas.draining or excluded.draining`,
    [replicaId, draining],
  );
}

/**
 * A new process under this replica id (REPLICA_ID may be fixed, e.g. a pod name): started_at
 * moves to now, so whatever the previous incarnation left open (requests, idempotency keys
 * created before it) counts as orphaned even though the id beats again.
 */
export async function registerStart(db: Queryable, replicaId: string): Promise<void> {
  await db.query(
    `insert into replicas (id) values ($1::text)
     on conflict (id) do update set started_at = now(), heartbeat_at = now(), draining = false`,
    [replicaId],
  );
}

/** A clean exit: the row goes, so the replica's leftovers are reconciled at once. */
export async function removeReplica(db: Queryable, replicaId: string): Promise<void> {
  await db.query('delete from replicas where id = $1::text', [replicaId]);
}

/** Rows of replicas silent for longer than olderThanMs (crashed long ago): housekeeping. */
export async function deleteSilentReplicas(db: Queryable, olderThanMs: number): Promise<number> {
  const result = await db.query(
    `delete from replicas where heartbeat_at < now() - $1::integer * interval '1 millisecond'`,
    [olderThanMs],
  );
  return result.rowCount ?? 0;
}

export interface ReplicaRow {
  id: string;
  startedAt: Date;
  heartbeatAt: Date;
  draining: boolean;
  /** Heartbeat within the lease. */
  alive: boolean;
}

export async function listReplicas(db: Queryable, leaseMs: number): Promise<ReplicaRow[]> {
  const result = await db.query<{ id: string; started_at: Date; heartbeat_at: Date; draining: boolean; alive: boolean }>(
    `select id, started_at, heartbeat_at, draining,
            heartbeat_at >= now() - $1::integer * interval '1 millisecond' as alive
       from replicas order by started_at`,
    [leaseMs],
  );
  return result.rows.map((row) => ({
    id: row.id, startedAt: row.started_at, heartbeatAt: row.heartbeat_at, draining: row.draining, alive: row.alive,
  }));
}
