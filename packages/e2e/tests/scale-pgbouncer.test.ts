// Three real replica processes whose DATABASE_URL is a real PgBouncer in transaction pooling
// mode (migrations on a direct MIGRATIONS_DATABASE_URL, as docker/README.md prescribes), 200
// concurrent calls of one user with credit for a limited number: the cost barrier must still
// bound the overdraft, and the books must match the simulator's to the nano-dollar.
//
// Parameterized on the barrier mode (BARRIER=serialize|reserve, passed through to every
// replica). A build whose config does not know BARRIER runs serialize whatever it is given,
// so the reserve case is skipped there, with the reason in its name.
import pg from 'pg';
import { verify } from '@metergate/db';
import { loadConfig } from '@metergate/server/config';
import {
  balanceBreaches, chatCall, createTestDatabase, eventually, ledgerUsageNano, requestStates, startPgBouncer, startSimCluster,
  type ChatResult, type GenerationRecord, type PgBouncer, type SimCluster, type TestDatabase,
} from '@metergate/testkit';

type Mode = 'serialize' | 'reserve';
const REPLICAS = 3;
const CALLS = 200;
const CALLS_AFFORDED = 30;
/** PgBouncer's server connections for the replicas' database: far fewer than the replicas' pools add up to (3 × 30). */
const SERVER_POOL_SIZE = 20;
const TEST_DURATION_MS_MAX = 60_000;
/**
 * How far below zero each mode may leave the balance, in calls. serialize: admission and the
 * call run under the user's lock, so only the last admitted call can overdraw. reserve: a call
 * is admitted only when its worst-case hold fits the available balance (README, Holds), so the
 * balance never goes below the minimum (0 here).
 */
const OVERDRAFT_BOUND_CALLS: Record<Mode, bigint> = { serialize: 1n, reserve: 0n };
const CALL = { latency_ms: 15, chunk_delay_ms: 2, completion_tokens: 8 };
const body = () => ({ model: 'openai/gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'count to eight' }], sim: CALL });

/**
 * A config that knows BARRIER validates it: an unknown mode is refused, a known one accepted.
 * One that does not know it ignores both (unknown variables are not read).
 */
function barrierSupported(): boolean {
  const base = { NODE_ENV: 'test', DATABASE_URL: 'postgres://u:p@127.0.0.1:1/d' };
  try {
    loadConfig({ ...base, BARRIER: 'no-such-mode' });
    return false;
  } catch {
    loadConfig({ ...base, BARRIER: 'reserve' });
    return true;
  }
}

/** Each start at or after the previous end: the upstream never saw two of them at once. */
function overlaps(generations: GenerationRecord[]): number {
  const sorted = [...generations].sort((a, b) => a.startedAtMs - b.startedAtMs);
  return sorted.filter((g, i) => i > 0 && g.startedAtMs < (sorted[i - 1]!.endedAtMs ?? Number.POSITIVE_INFINITY)).length;
}

/** Figures for humans when MG_E2E_REPORT=1; the assertions never depend on it. */
const printReport = (figures: Record<string, unknown>) => { if (process.env.MG_E2E_REPORT === '1') console.log(`# report ${JSON.stringify(figures)}`); };

interface Fixture { db: TestDatabase; bouncer: PgBouncer; f: SimCluster }

async function start(mode: Mode): Promise<Fixture> {
  const db = await createTestDatabase();
  // PgBouncer drops the statement_timeout startup parameter the pools send; the deployment
  // sets it on the role or database instead (docker/README.md), and so does this test.
  await db.pool.query(`alter database ${db.name} set statement_timeout = '10s'`);
  let bouncer: PgBouncer | undefined;
  try {
    bouncer = await startPgBouncer({ databaseUrl: db.url, defaultPoolSize: SERVER_POOL_SIZE, queryWaitTimeoutS: 10 });
    const f = await startSimCluster({
      replicas: REPLICAS, databaseUrl: bouncer.url,
      env: {
        LOG_LEVEL: 'warn', BARRIER: mode, MIGRATIONS_DATABASE_URL: db.url,
        // Debian's PgBouncer 1.18 cannot carry named prepared statements across transactions.
        PG_PREPARED_STATEMENTS: 'false',
        // High enough that no same-user caller is turned away with 503: every call must end 200 or 402.
        BARRIER_QUEUE_DEPTH_MAX: '1000', BARRIER_QUEUE_WAIT_MS: '120000', LOCK_TIMEOUT_MS: '60000',
      },
    });
    return { db, bouncer, f };
  } catch (error) {
    await bouncer?.stop();
    await db.drop();
    throw error;
  }
}

/** Peak server connections PgBouncer had open for the database, sampled every 50 ms until `until` settles. */
async function peakServers(bouncer: PgBouncer, database: string, until: Promise<unknown>): Promise<number> {
  const admin = new pg.Client({ connectionString: bouncer.adminUrl });
  await admin.connect();
  let done = false;
  void until.finally(() => { done = true; });
  let peak = 0;
  try {
    while (!done) {
      const { rows } = await admin.query<Record<string, number | string>>('show pools');
      for (const row of rows.filter((r) => r.database === database)) {
        peak = Math.max(peak, ['sv_active', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login'].reduce((sum, k) => sum + Number(row[k] ?? 0), 0));
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return peak;
  } finally {
    await admin.end();
  }
}

async function transactionsThrough(bouncer: PgBouncer, database: string): Promise<number> {
  const admin = new pg.Client({ connectionString: bouncer.adminUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ database: string; total_xact_count: string }>('show stats');
    return Number(rows.find((row) => row.database === database)?.total_xact_count ?? 0);
  } finally {
    await admin.end();
  }
}

function defineModeTests(mode: Mode): void {
  QUnit.module(`scale: ${REPLICAS} replicas through PgBouncer (transaction pooling), BARRIER=${mode}`, (hooks) => {
    let x: Fixture;
    hooks.before(async () => { x = await start(mode); });
    hooks.after(async () => {
      await x?.f.close();
      await x?.bouncer.stop();
      await x?.db.drop();
    });

    QUnit.test(`${CALLS} concurrent calls of one user: overdraft within one call, books exact, verify clean`, async (assert) => {
      assert.timeout(TEST_DURATION_MS_MAX);
      const { db, bouncer, f } = x;
      const { rows: [setting] } = await f.pool.query<{ statement_timeout: string }>('show statement_timeout');
      assert.strictEqual(setting!.statement_timeout, '10s', 'sessions through PgBouncer get statement_timeout from the database');

      const probeKey = await f.cluster.createUser('probe', 1_000_000_000n);
      const probe = await chatCall(f.cluster.urls[0]!, probeKey, body());
      assert.strictEqual(probe.status, 200, `probe call: ${probe.body.slice(0, 200)}`);
      await f.sim.whenIdle();
      const cost = f.sim.billedNano({ user: 'probe' });
      assert.true(cost > 0n, 'one call costs something (read from the simulator, never hard-coded)');
      // 29.5 calls' worth: the 30th call is admitted with half a call left and overdraws by half.
      const grant = cost * BigInt(CALLS_AFFORDED) - cost / 2n;
      const key = await f.cluster.createUser('busy', grant);
      const xactsBefore = await transactionsThrough(bouncer, db.name);

      const calls = Promise.all(Array.from({ length: CALLS }, (_, i) => chatCall(f.cluster.urls[i % REPLICAS]!, key, body(), { timeoutMs: 50_000 })));
      const peak = await peakServers(bouncer, db.name, calls);
      const results: ChatResult[] = await calls;

      const statuses = results.reduce<Record<number, number>>((acc, r) => ({ ...acc, [r.status]: (acc[r.status] ?? 0) + 1 }), {});
      assert.deepEqual(results.filter((r) => r.status !== 200 && r.status !== 402).map((r) => `${r.status} ${r.failure ?? ''} ${r.body.slice(0, 200)}`), [], `every call ended 200 or 402 (${JSON.stringify(statuses)})`);
      const admitted = results.filter((r) => r.status === 200);
      assert.true(admitted.every((r) => r.body.trimEnd().endsWith('data: [DONE]')), 'every admitted stream completed');
      assert.true(results.filter((r) => r.status === 402).every((r) => r.errorCode === 'insufficient_credits'), '402s are insufficient_credits');
      if (mode === 'serialize') {
        assert.strictEqual(admitted.length, CALLS_AFFORDED, 'serialize: exactly the calls the balance afforded were admitted');
      } else {
        assert.true(admitted.length >= 1 && admitted.length <= CALLS_AFFORDED, `reserve: ${admitted.length} admitted, at most the ${CALLS_AFFORDED} afforded`);
      }

      await f.sim.whenIdle(10_000);
      const generations = f.sim.generations().filter((g) => g.user === 'busy');
      assert.strictEqual(generations.length, admitted.length, 'the upstream saw only admitted calls');
      if (mode === 'serialize') assert.strictEqual(overlaps(generations), 0, 'serialize: the upstream saw the user\'s generations one at a time');
      const billed = f.sim.billedNano({ user: 'busy' });
      const ledger = await eventually(() => ledgerUsageNano(db.pool, 'busy'), (v) => v === billed, 10_000);
      assert.strictEqual(ledger, billed, 'ledger = simulator books to the nano-dollar');
      const maxCost = generations.reduce((max, g) => (g.costNano > max ? g.costNano : max), 0n);
      const { rows: [user] } = await db.pool.query<{ balance: string }>(`select balance_nano::text as balance from users where id = 'busy'`);
      const balance = BigInt(user!.balance);
      assert.strictEqual(balance, grant - billed, 'balance = grant − billed');
      const bound = OVERDRAFT_BOUND_CALLS[mode] * maxCost;
      assert.true(balance >= -bound, `overdraft ${balance} nano is within ${OVERDRAFT_BOUND_CALLS[mode]} call(s) (${bound} nano)`);

      const states = await eventually(() => requestStates(db.pool), (s) => (s.in_flight ?? 0) === 0 && (s.awaiting_cost ?? 0) === 0, 10_000);
      assert.deepEqual(states, { settled: admitted.length + 1 }, 'every admitted request (and the probe) settled; refused calls left no request');
      assert.deepEqual(await balanceBreaches(db.pool), [], 'balance = Σ ledger for every user');
      const report = await verify.verifyBooks(db.pool, { staleInFlightMs: 60_000, sampleMax: 5 });
      assert.true(report.ok, `verify finds no breach: ${JSON.stringify(report.breaches)}`);

      const xacts = (await transactionsThrough(bouncer, db.name)) - xactsBefore;
      printReport({ mode, statuses, costNano: String(cost), balanceNano: String(balance), peakServerConnections: peak, transactionsThroughPgBouncer: xacts,
        wallMs: Math.round(Math.max(...results.map((r) => r.endedAtMs)) - Math.min(...results.map((r) => r.sentAtMs))) });
      assert.true(xacts >= CALLS, `the replicas' transactions went through PgBouncer (${xacts} during the run)`);
      assert.true(peak >= 1 && peak <= SERVER_POOL_SIZE, `PgBouncer held at most ${SERVER_POOL_SIZE} server connections (peak ${peak})`);
    });
  });
}

defineModeTests('serialize');
if (barrierSupported()) {
  defineModeTests('reserve');
} else {
  QUnit.skip('scale through PgBouncer, BARRIER=reserve: skipped, this build\'s config does not know BARRIER (it would run serialize)', () => undefined);
}
