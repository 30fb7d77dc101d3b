import { randomBytes } from 'node:crypto';
import { formatNano, ledger, usdTextToNano } from '@metergate/db';
import { createLogger, loadConfig, startRuntime, type Runtime } from '@metergate/server';
import { startSimulator, type Simulator, type SimulatorOptions } from '@metergate/simulator';
import { createTestDatabase, type TestDatabase } from './database.js';

export interface StackOptions {
  /** Extra environment for the proxy's config (e.g. { LOCK_POOL_SIZE: '2' }). */
  env?: Record<string, string>;
  simulator?: SimulatorOptions;
  /** The controls' clock (spend-limit periods, rate windows) of every replica; default the database's. */
  clock?: () => Date | null;
}

export interface TestStack {
  readonly url: string;
  readonly adminToken: string;
  readonly db: TestDatabase;
  readonly sim: Simulator;
  readonly runtime: Runtime;
  /** Creates a user with a grant; returns its API key. */
  createUser(id: string, grantUsd?: string): Promise<string>;
  admin(method: string, path: string, body?: unknown): Promise<Response>;
  /** Another replica in this process on the same database and simulator (own pools, own REPLICA_ID); stopped by close(). */
  addReplica?(): Promise<Runtime>;
  close(): Promise<void>;
}

/**
 * A whole proxy in this process on loopback: fresh database, simulator, runtime. Everything
 * is stopped by close().
 */
export async function startStack(options: StackOptions = {}): Promise<TestStack> {
  const db = await createTestDatabase();
  const simKey = `sim-${randomBytes(8).toString('hex')}`;
  const sim = await startSimulator({ lookup404Ms: 100, ...options.simulator, apiKey: simKey, host: '127.0.0.1', port: 0 });
  const adminToken = `admin-${randomBytes(12).toString('hex')}`;
  const configEnv = {
    NODE_ENV: 'test', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', DATABASE_URL: db.url,
    OPENROUTER_BASE_URL: sim.url, OPENROUTER_API_KEY: simKey, ADMIN_TOKEN: adminToken,
    COST_LOOKUP_BACKOFF_MS: '50', ...options.env,
  };
  const config = loadConfig(configEnv);
  const log = createLogger(config.logLevel, config.replicaId);
  const runtime = await startRuntime({ config, log, databaseUrl: db.url, openRouterApiKey: simKey, adminToken, clock: options.clock });
  const extra: Runtime[] = [];
  const admin = (method: string, path: string, body?: unknown) => fetch(`${runtime.url}${path}`, {
    method, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return {
    url: runtime.url, adminToken, db, sim, runtime, admin,
    async createUser(id, grantUsd = '10.00') {
      const response = await admin('POST', '/admin/users', { id });
      if (response.status !== 201) throw new Error(`create user ${id}: ${response.status} ${await response.text()}`);
      const { api_key: apiKey } = (await response.json()) as { api_key: string };
      if (usdTextToNano(grantUsd) > 0n) {
        await ledger.appendCredit(db.pool, { userId: id, kind: 'grant', amountNano: usdTextToNano(grantUsd), note: 'test grant' });
      }
      return apiKey;
    },
    async addReplica() {
      const replicaConfig = loadConfig({ ...configEnv, REPLICA_ID: `${config.replicaId}-${extra.length + 2}` });
      const replica = await startRuntime({
        config: replicaConfig, log: createLogger(replicaConfig.logLevel, replicaConfig.replicaId), databaseUrl: db.url,
        openRouterApiKey: simKey, adminToken, clock: options.clock,
      });
      extra.push(replica);
      return replica;
    },
    async close() {
      for (const replica of extra) await replica.close(5_000);
      await runtime.close(5_000);
      await sim.close();
      await db.drop();
    },
  };
}

export { formatNano };
