import {
  balanceBreaches, chatCall, costLockKey, eventually, ledgerUsageNano, percentile, scrapeMetric, startSimCluster,
  type ChatResult, type GenerationRecord, type SimCluster,
} from '@metergate/testkit';

// Three real replica processes on one database, the simulator in this process. Upstream
// latency is real (timers), so calls overlap unless the barrier serializes them.
const REPLICAS = 3;
const BUSY_CALLS = 200;
const CALLS_AFFORDED = 40;
const OTHER_USERS = 20;
const OTHER_CALLS_MIN = 3;
const CALL = { latency_ms: 15, chunk_delay_ms: 2, completion_tokens: 8 };
const body = (sim: Record<string, number> = CALL) => ({
  model: 'openai/gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'count to eight' }], sim,
});

// Queue limits high enough that no same-user caller is turned away with 503: the test asserts
// every call ends 200 or 402.
const start = () => startSimCluster({
  replicas: REPLICAS,
  env: { LOG_LEVEL: 'warn', BARRIER_QUEUE_DEPTH_MAX: '1000', BARRIER_QUEUE_WAIT_MS: '120000', LOCK_TIMEOUT_MS: '60000', LOCK_POOL_SIZE: '20' },
});
type Fixture = SimCluster;

/** Cost of one CALL, read from the simulator's books (never hard-coded). */
async function costOfOneCall(f: Fixture): Promise<bigint> {
  const key = await f.cluster.createUser('probe', 1_000_000_000n);
  const result = await chatCall(f.cluster.urls[0]!, key, body());
  if (result.status !== 200) throw new Error(`probe call: ${result.status} ${result.body}`);
  await f.sim.whenIdle();
  const [probe] = f.sim.generations().filter((g) => g.user === 'probe');
  if (probe === undefined || probe.costNano <= 0n) throw new Error('probe generation missing or free');
  return probe.costNano;
}

/** Each start at or after the previous end: the upstream never saw two of them at once. */
function overlaps(generations: GenerationRecord[]): string[] {
  const sorted = [...generations].sort((a, b) => a.startedAtMs - b.startedAtMs);
  const found: string[] = [];
  for (let i = 1; i < sorted.length; i += 1) {
    const previousEnd = sorted[i - 1]!.endedAtMs ?? Number.POSITIVE_INFINITY;
    if (sorted[i]!.startedAtMs < previousEnd) found.push(`${sorted[i]!.id} started ${(previousEnd - sorted[i]!.startedAtMs).toFixed(1)} ms before ${sorted[i - 1]!.id} ended`);
  }
  return found;
}

/** Other users' calls, round-robin over replicas, until `until` resolves (at least OTHER_CALLS_MIN each). */
async function otherTraffic(f: Fixture, keys: string[], until: Promise<unknown>): Promise<ChatResult[]> {
  let done = false;
  void until.then(() => { done = true; });
  const results: ChatResult[] = [];
  await Promise.all(keys.map(async (key, user) => {
    for (let call = 0; call < OTHER_CALLS_MIN || !done; call += 1) {
      results.push(await chatCall(f.cluster.urls[(user + call) % REPLICAS]!, key, body()));
    }
  }));
  return results;
}

const latencyMs = (r: ChatResult) => r.endedAtMs - r.sentAtMs;
/** Figures for humans (README numbers) when MG_E2E_REPORT=1; the assertions never depend on it. */
const report = (figures: Record<string, unknown>) => { if (process.env.MG_E2E_REPORT === '1') console.log(`# report ${JSON.stringify(figures)}`); };

QUnit.module('scale: three replicas on one Postgres', (hooks) => {
  let f: Fixture;
  hooks.before(async () => { f = await start(); });
  hooks.after(async () => { await f?.close(); });

  QUnit.test(`${BUSY_CALLS} concurrent calls of one user over ${REPLICAS} replicas: serialized, bounded overdraft, exact books; others not slowed`, async (assert) => {
    const cost = await costOfOneCall(f);
    // 39.5 calls' worth: the 40th call is admitted with half a call left and overdraws by half.
    const grant = cost * BigInt(CALLS_AFFORDED) - cost / 2n;
    const busyKey = await f.cluster.createUser('busy', grant);
    const otherKeys = await Promise.all(Array.from({ length: OTHER_USERS }, (_, i) => f.cluster.createUser(`other${i}`, 1_000_000_000n)));

    await otherTraffic(f, otherKeys, Promise.resolve()); // warm-up: connections, pools, JIT
    const baseline = await otherTraffic(f, otherKeys, Promise.resolve());
    const busy = Promise.all(Array.from({ length: BUSY_CALLS }, (_, i) => chatCall(f.cluster.urls[i % REPLICAS]!, busyKey, body(), { timeoutMs: 90_000 })));
    const during = await otherTraffic(f, otherKeys, busy);
    const results = await busy;

    const byStatus = (status: number) => results.filter((r) => r.status === status);
    assert.strictEqual(byStatus(503).length, 0, 'no 503: queue limits were set high enough');
    assert.deepEqual(results.filter((r) => r.status !== 200 && r.status !== 402).map((r) => `${r.status} ${r.body.slice(0, 200)}`), [], 'every call ended 200 or 402');
    assert.strictEqual(byStatus(200).length, CALLS_AFFORDED, 'exactly the calls the balance admitted succeeded');
    assert.true(byStatus(200).every((r) => r.body.trimEnd().endsWith('data: [DONE]')), 'every admitted stream completed');
    assert.true(byStatus(402).every((r) => r.errorCode === 'insufficient_credits'), '402s are insufficient_credits');

    await f.sim.whenIdle(10_000);
    const generations = f.sim.generations().filter((g) => g.user === 'busy');
    assert.strictEqual(generations.length, CALLS_AFFORDED, 'the upstream saw only admitted calls');
    assert.deepEqual(overlaps(generations), [], 'the upstream saw the user\'s generations strictly one at a time');
    const billed = f.sim.billedNano({ user: 'busy' });
    const ledger = await eventually(() => ledgerUsageNano(f.pool, 'busy'), (v) => v === billed, 10_000);
    assert.strictEqual(ledger, billed, 'ledger = simulator books to the nano-dollar');
    const maxCost = generations.reduce((max, g) => (g.costNano > max ? g.costNano : max), 0n);
    const { rows: [user] } = await f.pool.query<{ balance: string }>(`select balance_nano::text as balance from users where id = 'busy'`);
    const balance = BigInt(user!.balance);
    assert.strictEqual(balance, grant - billed, 'balance = grant − billed');
    assert.true(balance < 0n && balance >= -maxCost, `overdraft ${balance} is within one call (${maxCost})`);
    assert.deepEqual(await balanceBreaches(f.pool), [], 'balance = Σ ledger for every user');
    const { rows: served } = await f.pool.query<{ replica_id: string }>(`select distinct replica_id from requests where user_id = 'busy'`);
    assert.strictEqual(served.length, REPLICAS, 'admitted calls were served by every replica');

    assert.true(during.every((r) => r.status === 200), 'other users\' calls all succeeded');
    const p95Base = percentile(baseline.map(latencyMs), 0.95);
    const p95During = percentile(during.map(latencyMs), 0.95);
    report({ busyCalls: BUSY_CALLS, admitted: byStatus(200).length, refused402: byStatus(402).length, costNano: String(cost),
      balanceNano: String(balance), busyPhaseMs: Math.round(Math.max(...results.map((r) => r.endedAtMs)) - Math.min(...results.map((r) => r.sentAtMs))),
      othersBaselineP95Ms: Math.round(p95Base), othersDuringP95Ms: Math.round(p95During), othersCallsDuring: during.length });
    assert.true(p95During < 2 * p95Base + 200, `others' p95 ${p95During.toFixed(0)} ms with the busy user vs ${p95Base.toFixed(0)} ms without (${during.length} calls)`);
    for (let i = 0; i < OTHER_USERS; i += 1) {
      const user = `other${i}`;
      assert.strictEqual(await ledgerUsageNano(f.pool, user), f.sim.billedNano({ user }), `${user}: ledger = books`);
    }
    const busy503 = await Promise.all(f.cluster.urls.map((url) => scrapeMetric(url, 'metergate_barrier_busy_total')));
    assert.deepEqual(busy503, [0, 0, 0], 'no barrier_busy on any replica');
  });

  QUnit.test('pool footprint: K=6 same-user calls on one replica put exactly one client on the lock', async (assert) => {
    const K = 6;
    const cost = f.sim.generations().find((g) => g.user === 'probe')!.costNano;
    const key = await f.cluster.createUser('foot', cost * BigInt(K + 1));
    const [lockKey, replicaId, url] = [costLockKey('foot'), f.cluster.replicaIds[0]!, f.cluster.urls[0]!];
    const unsigned = BigInt.asUintN(64, lockKey);
    const [classid, objid] = [String(unsigned >> 32n), String(unsigned & 0xffffffffn)];
    // Hold the user's lock from a test session, as another replica would.
    const holder = await f.pool.connect();
    let calls: Promise<ChatResult[]> | undefined;
    try {
      await holder.query('begin');
      await holder.query('select pg_advisory_xact_lock($1::bigint)', [lockKey.toString()]);
      calls = Promise.all(Array.from({ length: K }, () => chatCall(url, key, body())));
      const sample = async () => (await f.pool.query<{ app: string; granted: boolean }>(
        `select a.application_name as app, l.granted from pg_locks l join pg_stat_activity a on a.pid = l.pid
          where l.locktype = 'advisory' and l.classid = $1::oid and l.objid = $2::oid and l.objsubid = 1
            and a.datname = current_database() and a.application_name like 'metergate:%'`, [classid, objid])).rows;
      const queued = await eventually(() => scrapeMetric(url, 'metergate_barrier_queue_depth'), (n) => n === K - 1, 10_000);
      assert.strictEqual(queued, K - 1, `${K - 1} callers wait in memory`);
      await eventually(sample, (rows) => rows.length === 1, 10_000);
      for (let i = 0; i < 5; i += 1) {
        const rows = await sample();
        assert.deepEqual(rows, [{ app: `metergate:${replicaId}:lock`, granted: false }], `sample ${i}: one lock-pool client waits, none holds`);
        const { rows: [waiting] } = await f.pool.query<{ n: number }>(
          `select count(*)::int as n from pg_locks l join pg_stat_activity a on a.pid = l.pid
            where l.locktype = 'advisory' and not l.granted and a.application_name like 'metergate:%'`);
        assert.strictEqual(waiting!.n, 1, `sample ${i}: one waiter in the whole database`);
        assert.strictEqual(await scrapeMetric(url, 'metergate_pool_clients_pinned'), 1, `sample ${i}: the replica pins one client`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await holder.query('commit');
    } finally {
      holder.release();
    }
    const results = await calls!;
    assert.deepEqual(results.map((r) => r.status), Array(K).fill(200), 'all K calls ran once the lock was free');
    await f.sim.whenIdle(10_000);
    const generations = f.sim.generations().filter((g) => g.user === 'foot');
    assert.deepEqual(overlaps(generations), [], 'and one at a time');
    const billed = f.sim.billedNano({ user: 'foot' });
    assert.strictEqual(await eventually(() => ledgerUsageNano(f.pool, 'foot'), (v) => v === billed), billed, 'books exact');
  });
});
