import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { formatNano } from '@metergate/db';
import { startSimulator, type Simulator, type SimulatorOptions } from '@metergate/simulator';
import { createTestDatabase } from './database.js';
import { spawnReplica, type Replica } from './replica.js';

// Re-exported so end-to-end tests need only @metergate/testkit.
export { costLockKey } from '@metergate/db';
export { startSimulator, type GenerationRecord, type Simulator, type SimSteering } from '@metergate/simulator';

export interface ClusterOptions {
  databaseUrl: string;
  upstreamUrl: string;
  upstreamKey: string;
  replicas: number;
  /** Environment for every replica (pool sizes, timeouts, ...). */
  env?: Record<string, string>;
  /** Extra environment for replica `index` (wins over env). */
  envFor?: (index: number) => Record<string, string>;
  startTimeoutMs?: number;
}

export interface Cluster {
  readonly replicas: Replica[];
  readonly urls: string[];
  /** REPLICA_ID of each replica; its lock pool shows as `metergate:<id>:lock` in pg_stat_activity. */
  readonly replicaIds: string[];
  readonly adminToken: string;
  admin(method: string, path: string, body?: unknown, replicaIndex?: number): Promise<Response>;
  /** Creates a user through the admin API and grants it grantNano (exact, via amount_usd text); returns its key. */
  createUser(id: string, grantNano: bigint): Promise<string>;
  /** SIGTERM every live replica and wait (SIGKILL after timeoutMs). */
  stop(timeoutMs?: number): Promise<void>;
}

/**
 * K real replica processes (`node main.js`) on one database, started at once so they also
 * race the migration lock as a real roll-out would.
 */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const adminToken = `admin-${randomBytes(12).toString('hex')}`;
  const tag = randomBytes(3).toString('hex');
  const replicaIds = Array.from({ length: options.replicas }, (_, index) => `r${index + 1}-${tag}`);
  const started = await Promise.allSettled(replicaIds.map((id, index) => spawnReplica({
    databaseUrl: options.databaseUrl, upstreamUrl: options.upstreamUrl, upstreamKey: options.upstreamKey, adminToken,
    env: { REPLICA_ID: id, COST_LOOKUP_BACKOFF_MS: '50', ...options.env, ...options.envFor?.(index) },
    startTimeoutMs: options.startTimeoutMs,
  })));
  const replicas = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const failed = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(replicas.map((replica) => replica.stop(5_000)));
    throw failed.reason;
  }
  const admin = (method: string, path: string, body?: unknown, replicaIndex = 0) => fetch(`${replicas[replicaIndex]!.url}${path}`, {
    method, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return {
    replicas, urls: replicas.map((replica) => replica.url), replicaIds, adminToken, admin,
    async createUser(id, grantNano) {
      const created = await admin('POST', '/admin/users', { id });
      if (created.status !== 201) throw new Error(`create user ${id}: ${created.status} ${await created.text()}`);
      const { api_key: apiKey } = (await created.json()) as { api_key: string };
      if (grantNano > 0n) {
        const granted = await admin('POST', `/admin/users/${id}/credits`, { amount_usd: formatNano(grantNano), note: 'test grant' });
        if (granted.status !== 201) throw new Error(`grant ${id}: ${granted.status} ${await granted.text()}`);
      }
      return apiKey;
    },
    async stop(timeoutMs = 10_000) {
      await Promise.all(replicas.map((replica) => replica.stop(timeoutMs)));
    },
  };
}

export interface SimCluster {
  readonly sim: Simulator;
  readonly cluster: Cluster;
  /** A small pool on the replicas' database, for assertions. */
  readonly pool: pg.Pool;
  readonly databaseUrl: string;
  close(): Promise<void>;
}

/**
 * The usual end-to-end fixture: a simulator in this process and K replica processes on a
 * fresh test database (or on `databaseUrl`, e.g. a test's own embedded cluster).
 */
export async function startSimCluster(options: Omit<ClusterOptions, 'databaseUrl' | 'upstreamUrl' | 'upstreamKey'> & {
  databaseUrl?: string; simulator?: SimulatorOptions;
}): Promise<SimCluster> {
  const db = options.databaseUrl === undefined ? await createTestDatabase() : null;
  const databaseUrl = db?.url ?? options.databaseUrl!;
  const pool = db?.pool ?? new pg.Pool({ connectionString: databaseUrl, max: 4 });
  // A restarted database ends idle assertion clients too; the pool replaces them.
  pool.on('error', () => undefined);
  const closeDb = async () => { if (db !== null) await db.drop(); else await pool.end(); };
  const simKey = `sim-${randomBytes(8).toString('hex')}`;
  const sim = await startSimulator({ lookup404Ms: 100, ...options.simulator, apiKey: simKey, host: '127.0.0.1', port: 0 });
  let cluster: Cluster;
  try {
    cluster = await startCluster({ ...options, databaseUrl, upstreamUrl: sim.url, upstreamKey: simKey });
  } catch (error) {
    await sim.close();
    await closeDb();
    throw error;
  }
  return {
    sim, cluster, pool, databaseUrl,
    async close() {
      await cluster.stop();
      await sim.close();
      await closeDb();
    },
  };
}

/** A TCP port free on 127.0.0.1 right now (the OS picks it; a tiny race remains). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface ChatResult {
  status: number;
  /** The whole body as received (SSE text or JSON). */
  body: string;
  /** error.code of an error body, else null. */
  errorCode: string | null;
  retryAfter: string | null;
  /** performance.now() at send, first body byte, and end (or failure). */
  sentAtMs: number;
  firstByteAtMs: number | null;
  endedAtMs: number;
  /** Body reads that carried bytes: more than one means the body came in pieces. */
  reads: number;
  /** The connection failed mid-body (e.g. the replica died); status is still the one received. */
  failure: string | null;
}

/**
 * POST /v1/chat/completions and read the whole answer, timing the first byte. Never throws
 * for an HTTP status; a connection that fails before any status gives status 0.
 */
export async function chatCall(baseUrl: string, apiKey: string, body: Record<string, unknown>,
  options: { timeoutMs?: number; onFirstByte?: () => void } = {}): Promise<ChatResult> {
  const sentAtMs = performance.now();
  let firstByteAtMs: number | null = null;
  let text = '';
  let reads = 0;
  let status = 0;
  let retryAfter: string | null = null;
  let failure: string | null = null;
  try {
    const response = await fetch(`${baseUrl}/v1/chat/completions`, {
      method: 'POST', signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    status = response.status;
    retryAfter = response.headers.get('retry-after');
    const decoder = new TextDecoder();
    for await (const chunk of response.body ?? []) {
      if (firstByteAtMs === null) {
        firstByteAtMs = performance.now();
        options.onFirstByte?.();
      }
      reads += 1;
      text += decoder.decode(chunk as Uint8Array, { stream: true });
    }
    text += decoder.decode();
  } catch (error) {
    failure = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  }
  return { status, body: text, errorCode: errorCodeOf(text), retryAfter, sentAtMs, firstByteAtMs, endedAtMs: performance.now(), reads, failure };
}

function errorCodeOf(text: string): string | null {
  if (!text.startsWith('{')) return null;
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown } };
    return typeof parsed.error?.code === 'string' ? parsed.error.code : null;
  } catch {
    return null;
  }
}

/** Sum of a metric's samples on one replica's /metrics whose labels include `labels`. */
export async function scrapeMetric(replicaUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${replicaUrl}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  let total = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (match === null || match[1] !== name) continue;
    const labelText = match[2] ?? '';
    if (Object.entries(labels).every(([key, value]) => labelText.includes(`${key}="${value}"`))) total += Number(match[3]);
  }
  return total;
}

/** The p-th percentile (0 < p ≤ 1) by nearest rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) throw new Error('percentile of no values');
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}
