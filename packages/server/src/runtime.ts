import { createServer, type Server } from 'node:http';
import pg from 'pg';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CostBarrier, createPools, usePreparedStatements, idempotency, loadMigrations, migrate, replicas, requests, type Pools } from '@metergate/db';
import { CostLookup } from './billing/cost-lookup.js';
import { Settler } from './billing/settler.js';
import { KeyCache } from './auth/key-cache.js';
import type { Config } from './config.js';
import { createApp } from './http/app.js';
import { KeyWriter } from './idempotency/key-writer.js';
import { interruptedResponse } from './idempotency/stored-response.js';
import type { Logger } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { Heartbeat } from './reconcile/heartbeat.js';
import { HandOffs } from './reconcile/hand-offs.js';
import { Reconciler, type Housekeeping } from './reconcile/reconciler.js';
import type { Services } from './services.js';
import { UnsettledGauges } from './unsettled-gauges.js';
import { OpenRouterClient } from './upstream/openrouter.js';
import { PriceBook } from './holds/price-book.js';
import { AdmissionBatcher } from './holds/admission-batcher.js';
import { WebhookDeliverer } from './webhooks/deliverer.js';
import { runAdmissionBatch } from './holds/admission.js';


export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../migrations');

export interface RuntimeOptions {
  config: Config;
  log: Logger;
  /** Resolved database URL (the embedded one when DATABASE_URL is unset). */
  databaseUrl: string;
  openRouterApiKey: string;
  adminToken: string;
  /** Tests only: the controls' clock (default: the database's now()). */
  clock?: () => Date | null;
}

export interface Runtime {
  readonly url: string;
  readonly services: Services;
  readonly server: Server;
  /**
   * Graceful stop: new calls refused (503) and readiness 503 while in-flight calls finish, up
   * to deadlineMs (default SHUTDOWN_DEADLINE_MS); then settles, stops the heartbeat and the
   * reconciler, closes pools.
   */
  close(deadlineMs?: number): Promise<void>;
}

/** Builds one replica: pools, migrations, barrier, upstream client, HTTP server. */
export async function startRuntime(options: RuntimeOptions): Promise<Runtime> {
  const { config, log } = options;
  usePreparedStatements(config.pgPreparedStatements);
  const pools = createPools({
    connectionString: options.databaseUrl, lockPoolSize: config.lockPoolSize, writePoolSize: config.writePoolSize,
    connectTimeoutMs: config.poolAcquireTimeoutMs, statementTimeoutMs: config.statementTimeoutMs,
    idleTimeoutMs: 30_000, applicationName: `metergate:${config.replicaId}`,
    onError: (error, pool) => log.warn({ err: error, pool }, 'idle database client failed'),
  });
  const migrations = await loadMigrations(MIGRATIONS_DIR);
  await applyMigrations(config.migrationsDatabaseUrl ?? options.databaseUrl, migrations, config, log);
  const services = buildServices(options, pools, migrations);
  // Beating before taking traffic: a request row never names a replica others cannot judge.
  await services.heartbeat.start();
  // Prices before traffic: reserve mode refuses calls it cannot price.
  await services.priceBook.start();
  const app = createApp(services, options.adminToken);
  const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  services.reconciler.start();
  services.unsettledGauges.start();
  services.webhooks.start();
  let closing: Promise<void> | null = null;
  return {
    url: `http://${host}:${address.port}`, services, server,
    close: (deadlineMs) => (closing ??= shutdown(services, server, deadlineMs ?? config.shutdownDeadlineMs)),
  };
}

/**
 * On a connection of its own, not a pooled one: the runner holds a session-level advisory lock
 * (so it needs a real session, not PgBouncer's transaction mode: MIGRATIONS_DATABASE_URL can
 * point past the bouncer) and a long backfill must not meet the pools' statement_timeout.
 */
async function applyMigrations(url: string, migrations: Awaited<ReturnType<typeof loadMigrations>>, config: Config, log: Logger): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: config.poolAcquireTimeoutMs, application_name: `metergate:${config.replicaId}:migrate` });
  client.on('error', (error) => log.warn({ err: error }, 'migration connection failed'));
  await client.connect();
  try {
    const applied = await migrate(client, migrations);
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
  } finally {
    await client.end();
  }
}

function buildServices(options: RuntimeOptions, pools: Pools, migrations: Services['migrations']): Services {
  const { config, log } = options;
  const barrierRef: { current: CostBarrier | null } = { current: null };
  const priceBookRef: { current: PriceBook | null } = { current: null };
  const unsettledGauges = new UnsettledGauges(() => requests.unsettledSummary(pools.write), config.metricsRefreshMs, log);
  const metrics = createMetrics({
    queueDepth: () => (barrierRef.current?.queued ?? 0) + (servicesRef.current?.admissions.waiting ?? 0),
    pinnedClients: () => barrierRef.current?.pinned ?? 0,
    poolClients: () => [
      ...poolGauges('lock', pools.lock), ...poolGauges('write', pools.write), ...poolGauges('beat', pools.beat),
    ],
    unsettled: () => unsettledGauges.rows(),
    priceBookModels: () => priceBookRef.current?.size ?? 0,
  });
  const barrier = new CostBarrier({
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
  barrierRef.current = barrier;
  const upstream = new OpenRouterClient(config.openRouterBaseUrl, options.openRouterApiKey, {
    connectionsMax: config.upstreamConnectionsMax, timeoutMs: config.upstreamTimeoutMs, idleTimeoutMs: config.upstreamIdleTimeoutMs,
  });
  const retryLimits = { entriesMax: config.retryEntriesMax, attemptsMax: config.retryAttemptsMax };
  const handOffs = new HandOffs(pools.write, config.retryEntriesMax, metrics, log);
  const clock = options.clock ?? (() => null);
  const settler = new Settler(pools.write, metrics, log, retryLimits, handOffs, clock);
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
  };
  servicesRef.current = services;
  return services;
}

const SILENT_REPLICA_ROW_MS = 86_400_000;

/** The reconciler's other chores: expired and orphaned idempotency keys, long-dead replicas. */
function housekeeping(config: Config, pools: Pools, metrics: Metrics, log: Logger): Housekeeping {
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

function poolGauges(pool: string, p: Pools['lock']) {
  return [
    { pool, state: 'total', value: p.totalCount },
    { pool, state: 'idle', value: p.idleCount },
    { pool, state: 'waiting', value: p.waitingCount },
  ];
}

/**
 * SIGTERM: refuse new calls (503 draining, readiness 503) but keep listening so load balancers
 * see it, let in-flight calls finish and settle up to the deadline, keep the heartbeat going
 * meanwhile (else other replicas would reconcile our live streams), then cut what is left,
 * hand pending lookups to the reconciler, stop beating (row removed) and close.
 */
async function shutdown(services: Services, server: Server, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs;
  const left = () => Math.max(0, until - Date.now());
  services.lifecycle.draining = true;
  void services.heartbeat.markDraining();
  const reconcilerStopped = services.reconciler.stop(left());
  const webhooksStopped = services.webhooks.stop(left());
  await waitForCalls(services, until);
  await reconcilerStopped;
  await webhooksStopped;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  // Cut streams end as client_closed: upstream aborted, the partial cost settled. A
  // non-streaming call goes on (its generation runs to the end upstream and is billed in
  // full; aborting it would lose the id): it is waited for, up to its own duration limit, while
  // the heartbeat, settler and pools are still up, so its settle lands before they stop.
  await waitForCalls(services, Date.now() + services.config.upstreamDurationMsMax + services.config.settleTimeoutMs);
  if (services.lifecycle.inFlight > 0) services.log.error({ inFlight: services.lifecycle.inFlight }, 'calls still running past their duration limit at shutdown; the reconciler settles them');
  await closed;
  services.costLookup.handOff();
  await services.costLookup.drain(Math.max(left(), 1_000));
  const unsettled = await services.settler.drain(left());
  if (unsettled > 0) services.log.error({ unsettled }, 'shutting down with unsettled costs; the reconciler will settle them from the generation lookup');
  const keys = await services.idempotencyWriter.drain(left());
  if (keys > 0) services.log.warn({ keys }, 'shutting down with idempotency keys unwritten; the reconciler finishes them');
  services.settler.stop();
  services.idempotencyWriter.stop();
  services.priceBook.stop();
  await services.heartbeat.stop();
  services.unsettledGauges.stop();
  await services.upstream.close();
  await services.pools.end();
}

async function waitForCalls(services: Services, until: number): Promise<void> {
  while (services.lifecycle.inFlight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 25));
}
