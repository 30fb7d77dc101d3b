import pg from 'pg';
import {
  balanceBreaches, chatCall, eventually, ledgerUsageNano, startSimCluster, type SimCluster,
} from '@metergate/testkit';

// Reserve mode (BARRIER=reserve) at scale, with real replica processes: one user's calls run
// concurrently across replicas, each admitted only if its worst-case hold fits, so the
// balance never goes below the minimum; and one replica keeps a thousand streams open on a
// bounded number of Postgres backends.
const body = (sim: Record<string, number>, maxTokens: number) => ({
  model: 'openai/gpt-4o-mini', stream: true, max_tokens: maxTokens, messages: [{ role: 'user', content: 'count' }], sim,
});

async function userState(pool: pg.Pool, user: string): Promise<{ balance: bigint; held: bigint }> {
  const { rows } = await pool.query<{ balance: string; held: string }>('select balance_nano::text as balance, held_nano::text as held from users where id = $1::text', [user]);
  return { balance: BigInt(rows[0]!.balance), held: BigInt(rows[0]!.held) };
}

QUnit.module('holds (reserve mode): three replicas', (hooks) => {
  let f: SimCluster;
  hooks.before(async () => {
    f = await startSimCluster({ replicas: 3, env: { LOG_LEVEL: 'warn', BARRIER: 'reserve' } });
  });
  hooks.after(async () => { await f?.close(); });

  QUnit.test('200 concurrent calls of one user over 3 replicas: no overdraft, exact books, holds released', async (assert) => {
    // A grant for some of the 200 at their worst case (max_tokens 50 each): the rest get 402.
    const grant = 2_000_000n;
    const key = await f.cluster.createUser('burst', grant);
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => chatCall(f.cluster.urls[i % 3]!, key,
      body({ latency_ms: 20, chunk_delay_ms: 5, completion_tokens: 30 }, 50), { timeoutMs: 60_000 })));
    const served = results.filter((r) => r.status === 200).length;
    const refused = results.filter((r) => r.status === 402).length;
    assert.strictEqual(served + refused, 200, `every call 200 or 402 (others: ${JSON.stringify(results.filter((r) => r.status !== 200 && r.status !== 402).map((r) => [r.status, r.body.slice(0, 120)]))})`);
    assert.true(served > 0 && refused > 0, `some served (${served}), some refused (${refused})`);
    await f.sim.whenIdle(20_000);
    const billed = f.sim.billedNano({ user: 'burst' });
    const ledger = await eventually(() => ledgerUsageNano(f.pool, 'burst'), (v) => v === billed, 20_000);
    assert.strictEqual(ledger.toString(), billed.toString(), 'ledger = simulator books');
    const { balance, held } = await eventually(() => userState(f.pool, 'burst'), (s) => s.held === 0n, 20_000);
    assert.strictEqual(held.toString(), '0', 'every hold released');
    assert.true(balance >= 0n, `balance ${balance} never below the minimum`);
    assert.strictEqual(balance.toString(), (grant - billed).toString(), 'balance = grant − billed');
    assert.deepEqual(await balanceBreaches(f.pool), [], 'balance = Σ ledger for everyone');
  });
});

QUnit.module('holds (reserve mode): one replica, a thousand open streams', (hooks) => {
  let f: SimCluster;
  hooks.before(async () => {
    f = await startSimCluster({ replicas: 1, env: { LOG_LEVEL: 'warn', BARRIER: 'reserve', UPSTREAM_CONNECTIONS_MAX: '2000' } });
  });
  hooks.after(async () => { await f?.close(); });

  QUnit.test('1,000 concurrent open streams: no 503, peak Postgres backends within the two pool sizes', async (assert) => {
    const key = await f.cluster.createUser('wide', 100_000_000_000n);
    const watcher = new pg.Client({ connectionString: f.databaseUrl });
    await watcher.connect();
    let peak = 0;
    let watching = true;
    const watch = (async () => {
      while (watching) {
        const { rows } = await watcher.query<{ n: number }>(`select count(*)::integer as n from pg_stat_activity where application_name like 'metergate:%'`);
        peak = Math.max(peak, rows[0]!.n);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    let open = 0;
    let openPeak = 0;
    const results = await Promise.all(Array.from({ length: 1_000 }, () => chatCall(f.cluster.urls[0]!, key,
      body({ chunk_delay_ms: 400, completion_tokens: 20 }, 40), {
        timeoutMs: 90_000, onFirstByte: () => { open += 1; openPeak = Math.max(openPeak, open); },
      }).then((r) => { if (r.firstByteAtMs !== null) open -= 1; return r; })));
    watching = false;
    await watch;
    await watcher.end();
    const statuses = new Map<number, number>();
    for (const r of results) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    assert.deepEqual([...statuses], [[200, 1_000]], 'all 1,000 served, none refused or busy');
    assert.true(openPeak >= 900, `the streams were open at once (peak ${openPeak})`);
    // LOCK_POOL_SIZE 20 + WRITE_POOL_SIZE 10 by default, + the heartbeat's own client; reserve
    // mode pins none of them.
    assert.true(peak <= 31, `peak backends ${peak} ≤ the pool sizes (20 + 10 + 1)`);
    await f.sim.whenIdle(20_000);
    const billed = f.sim.billedNano({ user: 'wide' });
    const ledger = await eventually(() => ledgerUsageNano(f.pool, 'wide'), (v) => v === billed, 30_000);
    assert.strictEqual(ledger.toString(), billed.toString(), 'ledger = simulator books');
  });
});
