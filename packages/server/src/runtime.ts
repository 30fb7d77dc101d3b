import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { acquireClient, CostBarrier, createPools, loadMigrations, migrate, requests, type Pools } from '@metergate/db';
import { CostLookup } from './billing/cost-lookup.js';
import { Settler } from './billing/settler.js';
import type { Config } from './config.js';
import { createApp } from './http/app.js';
import type { Logger } from './log.js';
import { createMetrics } from './metrics.js';
import type { Services } from './services.js';
import { OpenRouterClient } from './upstream/openrouter.js';


export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../migrations');

export interface RuntimeOptions {
  config: Config;
  log: Logger;
  /** Resolved database URL (the embedded one when DATABASE_URL is unset). */
  databaseUrl: string;
  openRouterApiKey: string;
  adminToken: string;
}

export interface Runtime {
  readonly url: string;
  readonly services: Services;
  readonly server: Server;
  /** Stops accepting, lets in-flight calls finish up to deadlineMs, settles, closes pools. */
  close(deadlineMs?: number): Promise<void>;
}

/** Builds one replica: pools, migrations, barrier, upstream client, HTTP server. */
export async function startRuntime(options: RuntimeOptions): Promise<Runtime> {
  const { config, log } = options;
  const pools = createPools({
    connectionString: options.databaseUrl, lockPoolSize: config.lockPoolSize, writePoolSize: config.writePoolSize,
    connectTimeoutMs: config.poolAcquireTimeoutMs, statementTimeoutMs: config.statementTimeoutMs,
    idleTimeoutMs: 30_000, applicationName: `metergate:${config.replicaId}`,
    onError: (error, pool) => log.warn({ err: error, pool }, 'idle database client failed'),
  });
  const migrations = await loadMigrations(MIGRATIONS_DIR);
  await applyMigrations(pools, migrations, config, log);
  const services = buildServices(options, pools, migrations);
  const app = createApp(services, options.adminToken);
  const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  return { url: `http://${host}:${address.port}`, services, server, close: (deadlineMs) => shutdown(services, server, deadlineMs ?? 30_000) };
}

async function applyMigrations(pools: Pools, migrations: Awaited<ReturnType<typeof loadMigrations>>, config: Config, log: Logger): Promise<void> {
  const client = await acquireClient(pools.write, 'write', config.poolAcquireTimeoutMs);
  try {
    const applied = await migrate(client, migrations);
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
  } finally {
    client.release();
  }
}

function buildServices(options: RuntimeOptions, pools: Pools, migrations: Services['migrations']): Services {
  const { config, log } = options;
  const barrierRef: { current: CostBarrier | null } = { current: null };
  const metrics = createMetrics({
    queueDepth: () => barrierRef.current?.queued ?? 0,
    pinnedClients: () => barrierRef.current?.pinned ?? 0,
    poolClients: () => [
      ...poolGauges('lock', pools.lock), ...poolGauges('write', pools.write),
    ],
    unsettled: () => requests.unsettledSummary(pools.write),
  });
  const barrier = new CostBarrier({
    pool: pools.lock, acquireTimeoutMs: config.poolAcquireTimeoutMs, lockTimeoutMs: config.lockTimeoutMs,
    queueWaitMs: config.barrierQueueWaitMs, queueDepthMax: config.barrierQueueDepthMax,
    // The holder idles in its transaction for the whole upstream call; Postgres ends it only
    // if this process hangs past the longest call we allow.
    holdMsMax: config.upstreamDurationMsMax + config.settleTimeoutMs + 30_000,
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
  const settler = new Settler(pools.write, metrics, log);
  const costLookup = new CostLookup(upstream, settler, pools.write, metrics, log, {
    attemptsMax: config.costLookupAttemptsMax, backoffMs: config.costLookupBackoffMs, requestTimeoutMs: config.upstreamTimeoutMs,
  });
  return { config, log, metrics, pools, barrier, upstream, settler, costLookup, migrations, lifecycle: { draining: false, inFlight: 0 } };
}

function poolGauges(pool: string, p: Pools['lock']) {
  return [
    { pool, state: 'total', value: p.totalCount },
    { pool, state: 'idle', value: p.idleCount },
    { pool, state: 'waiting', value: p.waitingCount },
  ];
}

async function shutdown(services: Services, server: Server, deadlineMs: number): Promise<void> {
  services.lifecycle.draining = true;
  const until = Date.now() + deadlineMs;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  while (services.lifecycle.inFlight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 25));
  server.closeAllConnections();
  await closed;
  await services.costLookup.drain(Math.max(0, until - Date.now()));
  const unsettled = await services.settler.drain(Math.max(0, until - Date.now()));
  if (unsettled > 0) services.log.error({ unsettled }, 'shutting down with unsettled costs; the reconciler will settle them from the generation lookup');
  services.settler.stop();
  await services.upstream.close();
  await services.pools.end();
}
