import { CostBarrier, requests, type Pools } from '@metergate/db';
import { KeyCache } from './auth/key-cache.js';
import { CostLookup } from './billing/cost-lookup.js';
import { Settler } from './billing/settler.js';
import type { Config } from './config.js';
import { AdmissionBatcher } from './holds/admission-batcher.js';
import { runAdmissionBatch } from './holds/admission.js';
import { PriceBook } from './holds/price-book.js';
import { housekeeping } from './housekeeping.js';
import { KeyWriter } from './idempotency/key-writer.js';
import type { Logger } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { HandOffs } from './reconcile/hand-offs.js';
import { Heartbeat } from './reconcile/heartbeat.js';
import { Reconciler } from './reconcile/reconciler.js';
import type { RuntimeOptions } from './runtime.js';
import type { Services } from './services.js';
import { UnsettledGauges } from './unsettled-gauges.js';
import { OpenRouterClient } from './upstream/openrouter.js';
import { WebhookDeliverer } from './webhooks/deliverer.js';
import { generationIdBatcher } from './billing/generation-ids.js';
import { admissionStatements } from './holds/admission-statements.js';

/** Wiring: every long-lived part of one replica, built from the config, nothing started yet. */
export function buildServices(options: RuntimeOptions, pools: Pools, migrations: Services['migrations']): Services {
  const { config, log } = options;
  const barrierRef: { current: CostBarrier | null } = { current: null };
  const priceBookRef: { current: PriceBook | null } = { current: null };
  const unsettledGauges = new UnsettledGauges(() => requests.unsettledSummary(pools.write), config.metricsRefreshMs, log);
  const metrics = createMetrics({
    queueDepth: () => (barrierRef.current?.queued ?? 0) + (servicesRef.current?.admissions.waiting ?? 0),
    pinnedClients: () => barrierRef.current?.pinned ?? 0,
    poolClients: () => [
      ...poolGauges('lock', pools.lock), ...poolGauges('write', pools.write), ...poolGauges('admin', pools.admin),
      ...poolGauges('beat', pools.beat),
    ],
    unsettled: () => unsettledGauges.rows(),
    priceBookModels: () => priceBookRef.current?.size ?? 0,
  });
  const barrier = costBarrier(config, pools, metrics, log);
  barrierRef.current = barrier;
  const upstream = new OpenRouterClient(config.openRouterBaseUrl, options.openRouterApiKey, {
    connectionsMax: config.upstreamConnectionsMax, timeoutMs: config.upstreamTimeoutMs, idleTimeoutMs: config.upstreamIdleTimeoutMs,
  });
  const retryLimits = { entriesMax: config.retryEntriesMax, attemptsMax: config.retryAttemptsMax };
  const handOffs = new HandOffs(pools.write, config.retryEntriesMax, metrics, log);
  const clock = options.clock ?? (() => null);
  const writeBatching = { batchMax: config.writeBatchMax, batchesInFlightMax: config.writeBatchesInFlightMax };
  const settler = new Settler(pools.write, metrics, log, retryLimits, handOffs, clock, writeBatching);
  const priceBook = new PriceBook(pools.write, upstream, log, {
    refreshIntervalMs: config.priceRefreshMs, reloadIntervalMs: config.priceBookReloadMs, fetchTimeoutMs: config.upstreamTimeoutMs,
  });
  priceBookRef.current = priceBook;
  const costLookup = new CostLookup(upstream, settler, pools.write, metrics, log, {
    tasksMax: config.costLookupTasksMax, attemptsMax: config.costLookupAttemptsMax, backoffMs: config.costLookupBackoffMs, requestTimeoutMs: config.upstreamTimeoutMs,
    callCostMaxNano: config.callCostMaxNano,
  });
  // Beats further apart than this are a break (an outage others may have shared): the lease
  // less two intervals, so a live replica's staleness after an outage this replica did not
  // notice stays within the lease.
  const heartbeatGapMsMax = Math.max(config.replicaLeaseMs - 2 * config.heartbeatIntervalMs, 1.5 * config.heartbeatIntervalMs);
  const heartbeat = new Heartbeat(pools.beat, config.replicaId, config.heartbeatIntervalMs, metrics, log, heartbeatGapMsMax);
  const reconciler = new Reconciler(pools.write, costLookup, settler, housekeeping(config, pools, metrics, log), metrics, log, {
    intervalMs: config.reconcileIntervalMs, leaseMs: config.replicaLeaseMs, batchMax: config.reconcileBatchMax,
    concurrency: config.reconcileConcurrency,
    // One lookup and its settle fit in a claim; a reconciler that dies mid-way frees it after.
    claimMs: config.upstreamTimeoutMs + config.settleTimeoutMs + config.reconcileIntervalMs,
    inFlightMsMax: config.upstreamDurationMsMax + 2 * config.settleTimeoutMs + 60_000,
    upForMs: () => heartbeat.upForMs(),
    flushHandOffs: () => handOffs.flush(),
    backoffMs: config.reconcileBackoffMs, backoffMsMax: config.reconcileBackoffMsMax,
    attemptsMax: config.reconcileAttemptsMax, ageMsMax: config.reconcileAgeMsMax,
  });
  const servicesRef: { current: Services | null } = { current: null };
  const admissions = new AdmissionBatcher(
    (userId, calls) => runAdmissionBatch(servicesRef.current!, userId, calls),
    config.admissionQueueDepthMax, Math.max(1, Math.ceil(config.statementTimeoutMs / 1000)),
  );
  const services: Services = {
    config, log, metrics, pools, barrier, upstream, settler, costLookup, migrations, priceBook, admissions,
    keyCache: new KeyCache(config.authCacheMs, config.authCacheEntriesMax),
    idempotencyWriter: new KeyWriter(metrics, log, retryLimits), heartbeat, reconciler, unsettledGauges,
    lifecycle: { draining: false, inFlight: 0 }, clock, webhooks: new WebhookDeliverer(pools.write, config, log),
    generationIds: generationIdBatcher(pools.write, writeBatching, log, metrics),
    admissionStatements: admissionStatements(pools.write, config.replicaId, config.minBalanceNano, writeBatching, log, metrics),
  };
  servicesRef.current = services;
  return services;
}

function poolGauges(pool: string, p: Pools['lock']) {
  return [
    { pool, state: 'total', value: p.totalCount },
    { pool, state: 'idle', value: p.idleCount },
    { pool, state: 'waiting', value: p.waitingCount },
  ];
}

/** The serialize barrier's per-user lock, with its limits and what it reports. */
function costBarrier(config: Config, pools: Pools, metrics: Metrics, log: Logger): CostBarrier {
  return new CostBarrier({
    pool: pools.lock, acquireTimeoutMs: config.poolAcquireTimeoutMs, lockTimeoutMs: config.lockTimeoutMs,
    queueWaitMs: config.barrierQueueWaitMs, queueDepthMax: config.barrierQueueDepthMax,
    onLockHeld: (seconds) => metrics.lockHold.observe({ mode: 'serialize' }, seconds),
    // The holder idles in its transaction for the whole upstream call; Postgres ends it only
    // if this process hangs past the longest call we allow (a write to a slow client may
    // wait up to its stall limit after the duration limit struck).
    holdMsMax: config.upstreamDurationMsMax + config.clientWriteStallMsMax + config.settleTimeoutMs + 30_000,
    onLockWait: (seconds) => metrics.lockWait.observe(seconds),
    onHolderLost: (error, userId) => {
      metrics.holderLost.inc();
      log.warn({ err: error, userId }, 'lock holder session ended before commit; cost was saved separately');
    },
  });
}
