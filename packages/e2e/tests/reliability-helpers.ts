// Shared pieces of the reliability tests (issue 3): real replica processes with short
// reconciler/heartbeat intervals, a streaming client that can stop half-way, and the books
// check that ends every test (ledger = simulator to the nano-dollar, verify finds no breach).
import { randomBytes } from 'node:crypto';
import { verify, type VerifyReport } from '@metergate/db';
import {
  createTestDatabase, eventually, ledgerUsageNano, spawnReplica, startSimulator,
  type Replica, type Simulator, type TestDatabase,
} from '@metergate/testkit';

/** Short intervals so a crash is noticed and reconciled within about a second. */
export const FAST_ENV: Record<string, string> = {
  LOG_LEVEL: 'warn',
  HEARTBEAT_INTERVAL_MS: '100',
  REPLICA_LEASE_MS: '600',
  RECONCILE_INTERVAL_MS: '200',
  RECONCILE_BACKOFF_MS: '100',
  RECONCILE_BACKOFF_MAX_MS: '400',
  RECONCILE_ATTEMPTS_MAX: '100',
  COST_LOOKUP_BACKOFF_MS: '50',
  COST_LOOKUP_ATTEMPTS_MAX: '3',
  SHUTDOWN_DEADLINE_MS: '10000',
};

/** Same rule as the server's verify-report.ts for FAST_ENV (lease + 2.4 intervals). */
export const STALE_IN_FLIGHT_MS = 600 + Math.ceil(2.4 * 200);

/** Every wait in these tests is bounded by this unless it says otherwise. */
export const WAIT_MS = 15_000;

export const MODEL = 'openai/gpt-4o-mini';

export interface Fixture {
  readonly db: TestDatabase;
  readonly sim: Simulator;
  readonly simKey: string;
  readonly adminToken: string;
  readonly replicas: Replica[];
  spawn(env?: Record<string, string>, databaseUrl?: string): Promise<Replica>;
  createUser(replica: Replica, id: string, grantUsd?: string): Promise<string>;
  close(): Promise<void>;
}

export async function startFixture(lookup404Ms = 100): Promise<Fixture> {
  const db = await createTestDatabase();
  const simKey = `sim-${randomBytes(8).toString('hex')}`;
  const sim = await startSimulator({ apiKey: simKey, host: '127.0.0.1', port: 0, lookup404Ms });
  const adminToken = `admin-${randomBytes(12).toString('hex')}`;
  const replicas: Replica[] = [];
  return {
    db, sim, simKey, adminToken, replicas,
    async spawn(env = {}, databaseUrl = db.url) {
      const replica = await spawnReplica({
        databaseUrl, upstreamUrl: sim.url, upstreamKey: simKey, adminToken,
        env: { REPLICA_ID: `r-${randomBytes(3).toString('hex')}`, ...FAST_ENV, ...env },
      });
      replicas.push(replica);
      return replica;
    },
    async createUser(replica, id, grantUsd = '10') {
      const admin = (path: string, body: unknown) => fetch(`${replica.url}${path}`, {
        method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body), signal: AbortSignal.timeout(WAIT_MS),
      });
      const created = await admin('/admin/users', { id });
      if (created.status !== 201) throw new Error(`create user ${id}: ${created.status} ${await created.text()}`);
      const { api_key: apiKey } = (await created.json()) as { api_key: string };
      const granted = await admin(`/admin/users/${id}/credits`, { amount_usd: grantUsd, note: 'test grant' });
      if (granted.status !== 201) throw new Error(`grant ${id}: ${granted.status} ${await granted.text()}`);
      return apiKey;
    },
    async close() {
      await Promise.all(replicas.map((replica) => replica.stop(10_000)));
      await sim.close();
      await db.drop();
    },
  };
}

export function chatBody(sim: Record<string, unknown>, stream = true): Record<string, unknown> {
  return { model: MODEL, stream, messages: [{ role: 'user', content: 'Tell me about ledgers.' }], sim };
}

export function post(url: string, apiKey: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: 'POST', body: JSON.stringify(body), signal: signal ?? AbortSignal.timeout(WAIT_MS),
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', ...headers },
  });
}

export interface PartialStream {
  response: Response;
  /** Text read so far. */
  text: string;
  /** Resolves with the whole text once the body ends or fails (failure noted). */
  rest: Promise<{ text: string; failure: string | null }>;
}

/**
 * Starts a streaming call and resolves once `events` data events have arrived; the rest keeps
 * being read in the background (the caller may kill the replica or abort meanwhile).
 */
export async function streamUntil(url: string, apiKey: string, body: unknown, events: number,
  options: { headers?: Record<string, string>; abort?: AbortController } = {}): Promise<PartialStream> {
  const abort = options.abort ?? new AbortController();
  const timer = setTimeout(() => abort.abort(new Error('test stream timed out')), WAIT_MS);
  const response = await post(url, apiKey, body, options.headers, abort.signal);
  if (response.status !== 200) throw new Error(`stream: ${response.status} ${await response.text()}`);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const partial: PartialStream = { response, text: '', rest: Promise.resolve({ text: '', failure: null }) };
  const count = () => partial.text.split('\n\n').filter((event) => event.startsWith('data: {')).length;
  let reached!: () => void;
  const enough = new Promise<void>((resolve) => { reached = resolve; });
  partial.rest = (async () => {
    let failure: string | null = null;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        partial.text += decoder.decode(value, { stream: true });
        if (count() >= events) reached();
      }
    } catch (error) {
      failure = error instanceof Error ? error.message : String(error);
    } finally {
      clearTimeout(timer);
      reached();
    }
    return { text: partial.text, failure };
  })();
  await enough;
  return partial;
}

/** The one request row of a user (these tests make one metered call per user unless noted). */
export async function requestsOf(db: TestDatabase, userId: string): Promise<Array<{ id: string; state: string; reason: string | null; generation_id: string | null; lookup_attempts: number }>> {
  const result = await db.pool.query<{ id: string; state: string; reason: string | null; generation_id: string | null; lookup_attempts: number }>(
    'select id, state, reason, generation_id, lookup_attempts from requests where user_id = $1::text order by started_at', [userId]);
  return result.rows;
}

export async function usageEntries(db: TestDatabase, userId: string): Promise<number> {
  const result = await db.pool.query<{ n: number }>(
    `select count(*)::integer as n from ledger_entries where user_id = $1::text and kind = 'usage'`, [userId]);
  return result.rows[0]!.n;
}

/** Waits until every request of the user is settled; returns the rows as last read. */
export function settledEventually(db: TestDatabase, userId: string, timeoutMs = WAIT_MS) {
  return eventually(() => requestsOf(db, userId), (rows) => rows.length > 0 && rows.every((row) => row.state === 'settled'), timeoutMs);
}

/**
 * The closing check of every test: the simulator is idle, the ledger holds exactly what it
 * billed each user, and verify finds no breach.
 */
export async function assertBooks(assert: Assert, f: Fixture, users: string[]): Promise<VerifyReport> {
  await f.sim.whenIdle(WAIT_MS);
  for (const user of users) {
    const billed = f.sim.billedNano({ user });
    const ledger = await eventually(() => ledgerUsageNano(f.db.pool, user), (value) => value === billed, WAIT_MS);
    assert.strictEqual(ledger.toString(), billed.toString(), `ledger of ${user} equals what the simulator billed (nano-USD)`);
  }
  const report = await verify.verifyBooks(f.db.pool, { staleInFlightMs: STALE_IN_FLIGHT_MS, sampleMax: 5 });
  assert.true(report.ok, `verify finds no breach: ${JSON.stringify(report.breaches)}`);
  return report;
}

export function chatCalls(sim: Simulator, user: string): number {
  return sim.requestLog.filter((entry) => entry.method === 'POST' && entry.path.endsWith('/chat/completions') && entry.user === user).length;
}
