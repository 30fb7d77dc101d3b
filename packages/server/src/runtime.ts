import { createServer, type Server } from 'node:http';
import pg from 'pg';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPools, usePreparedStatements, loadMigrations, migrate } from '@metergate/db';
import type { Config } from './config.js';
import { createApp } from './http/app.js';
import type { Logger } from './log.js';
import type { Services } from './services.js';
import { shutdown } from './shutdown.js';
import { buildServices } from './wiring.js';

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
    adminPoolSize: config.adminPoolSize, sessionOptions: config.pgOptions,
    // Unnamed statements are planned on every call whatever the mode: nothing to gain there.
    genericPlans: config.pgPreparedStatements,
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
