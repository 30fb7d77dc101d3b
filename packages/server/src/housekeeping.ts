import { idempotency, replicas, type Pools } from '@metergate/db';
import type { Config } from './config.js';
import { interruptedResponse } from './idempotency/stored-response.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { Housekeeping } from './reconcile/reconciler.js';

const SILENT_REPLICA_ROW_MS = 86_400_000;

/** The reconciler's other chores: expired and orphaned idempotency keys, long-dead replicas. */
export function housekeeping(config: Config, pools: Pools, metrics: Metrics, log: Logger): Housekeeping {
  // A running key whose request row never appeared: its attempt waited in the barrier at most
  // this long, so after it the attempt is surely over.
  const orphanAgeMs = Math.max(600_000, config.barrierQueueWaitMs + config.lockTimeoutMs + config.poolAcquireTimeoutMs + 60_000);
  const interrupted = interruptedResponse();
  return async (judgeHeartbeats) => {
    const db = pools.write;
    const expired = await idempotency.deleteExpiredKeys(db, config.reconcileBatchMax);
    const orphans = await idempotency.finishOrphanKeys(db, {
      leaseMs: config.replicaLeaseMs, orphanAgeMs, interrupted, limit: config.reconcileBatchMax, judgeHeartbeats,
    });
    const silent = judgeHeartbeats ? await replicas.deleteSilentReplicas(db, SILENT_REPLICA_ROW_MS) : 0;
    if (orphans.released > 0) metrics.idempotency.inc({ outcome: 'orphan_released' }, orphans.released);
    if (orphans.interrupted > 0) metrics.idempotency.inc({ outcome: 'orphan_interrupted' }, orphans.interrupted);
    if (expired + orphans.released + orphans.interrupted + silent > 0) {
      log.info({ expiredKeys: expired, ...orphans, silentReplicas: silent }, 'reconciler housekeeping');
    }
  };
}
