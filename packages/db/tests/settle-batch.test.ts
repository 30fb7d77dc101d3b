// settleUsages: several requests, of one user or many, in one statement. Real Postgres: every
// total, hold, counter, spend limit, ledger balance and rollup must come out as if each had
// been settled alone, in the batch's order.
import { randomUUID } from 'node:crypto';
import { controls, costLockKey, keys, ledger, requests, users, verify } from '@metergate/db';
import { createTestDatabase, type TestDatabase } from '@metergate/testkit';

const GRANT_NANO = 1_000_000n;

/** What the settle charges: ceil(cost × ppm / 10^6). */
function charged(costNano: bigint, ppm: bigint): bigint {
  return (costNano * ppm + 999_999n) / 1_000_000n;
}

QUnit.module('ledger: settling a batch in one statement', (hooks) => {
  let db: TestDatabase;
  hooks.beforeEach(async () => { db = await createTestDatabase(); });
  hooks.afterEach(async () => { await db.drop(); });

  async function setUp(): Promise<Map<string, string[]>> {
    for (const id of ['a', 'b', 'c']) {
      await users.insertUser(db.pool, id);
      await ledger.appendCredit(db.pool, { userId: id, kind: 'grant', amountNano: GRANT_NANO, note: null });
      await keys.insertKey(db.pool, { id: `${id}-k`, userId: id, hash: Buffer.from(id) });
    }
    await db.pool.query(`update users set multiplier_ppm = 1250000 where id = 'a'`);
    await db.pool.query(`update users set alert_balance_below_nano = 900000 where id = 'c'`);
    await controls.putControls(db.pool, { kind: 'user', id: 'a' }, { spend: [{ period: 'never', amountNano: 10_000_000n }] }, null);
    await controls.putControls(db.pool, { kind: 'key', id: 'b-k' }, { spend: [{ period: 'day', amountNano: 10_000_000n }] }, null);
    const admitted = new Map<string, string[]>();
    for (const [userId, n] of [['a', 3], ['b', 2], ['c', 1]] as const) {
      const calls = Array.from({ length: n }, (_, i) => ({
        id: randomUUID(), model: `m${i % 2}`, stream: false, upstreamHoldNano: 40_000n, holdCompletionTokens: 1, keyId: i === 0 && userId === 'c' ? null : `${userId}-k`,
      }));
      const held = await requests.admitBatch(db.pool, { userId, replicaId: 'batch', minBalanceNano: 0n, lockKey: costLockKey(userId), calls });
      if (held.size !== n) throw new Error(`${userId}: ${held.size} of ${n} admitted`);
      admitted.set(userId, calls.map((c) => c.id));
    }
    return admitted;
  }

  QUnit.test('six requests of three users, an already settled one and an unknown one: exact books', async (assert) => {
    const admitted = await setUp();
    const [a1, a2, a3] = admitted.get('a')!;
    const [b1, b2] = admitted.get('b')!;
    const [c1] = admitted.get('c')!;
    await ledger.settleUsage(db.pool, { requestId: b2!, upstreamCostNano: 1_000n, generationId: null, promptTokens: 1, completionTokens: 1 });
    const costs: Array<[string, bigint]> = [[a2!, 10_001n], [c1!, 150_000n], [a1!, 20_000n], [b1!, 30_000n], [b2!, 5n], [a3!, 7n], [randomUUID(), 9n]];
    const results = await ledger.settleUsages(db.pool, costs.map(([requestId, upstreamCostNano]) => ({
      requestId, upstreamCostNano, generationId: `gen-${requestId}`, promptTokens: 3, completionTokens: 5, provider: 'P',
    })));
    assert.deepEqual(results.map((r) => r === null), [false, false, false, false, true, false, true], 'closed and unknown requests: null, in their places');
    const ppm = (id: string) => (id === 'a' ? 1_250_000n : 1_000_000n);
    for (const [i, [requestId, cost]] of costs.entries()) {
      const entry = results[i];
      if (entry === null || entry === undefined) continue;
      assert.strictEqual(entry.requestId, requestId);
      assert.strictEqual((-entry.amountNano).toString(), charged(cost, ppm(entry.userId)).toString(), `${requestId}: charged by its user's multiplier`);
      assert.strictEqual(entry.releasedHoldNano.toString(), charged(40_000n, ppm(entry.userId)).toString(), 'the released hold is the request\'s');
    }
    // a's three entries: in the batch's order (a2, a1, a3), each balance the one after it.
    const a = await db.pool.query<{ request_id: string; amount_nano: string; balance_after_nano: string }>(
      `select request_id, amount_nano::text, balance_after_nano::text from ledger_entries where user_id = 'a' order by id`);
    assert.deepEqual(a.rows.slice(1).map((r) => r.request_id), [a2, a1, a3], 'entries in the batch\'s order');
    let running = 0n;
    for (const row of a.rows) {
      running += BigInt(row.amount_nano);
      assert.strictEqual(row.balance_after_nano, running.toString(), 'each entry\'s balance is the sum of the entries up to it');
    }
    const totals = await db.pool.query<{ id: string; balance: string; held: string; open: number; usage: string }>(
      `select id, balance_nano::text as balance, held_nano::text as held, open_calls as open, usage_nano::text as usage from users order by id`);
    const charges = { a: charged(10_001n, 1_250_000n) + charged(20_000n, 1_250_000n) + charged(7n, 1_250_000n), b: 1_000n + 30_000n, c: 150_000n };
    assert.deepEqual(totals.rows, ['a', 'b', 'c'].map((id) => ({
      id, balance: (GRANT_NANO - charges[id as 'a']).toString(), held: '0', open: 0, usage: charges[id as 'a'].toString(),
    })), 'balances, holds, open calls and usage per user');
    const keyRows = await db.pool.query<{ id: string; held: string; open: number }>(`select id, held_nano::text as held, open_calls as open from api_keys order by id`);
    assert.deepEqual(keyRows.rows.map((k) => [k.id, k.held, k.open]), [['a-k', '0', 0], ['b-k', '0', 0], ['c-k', '0', 0]], 'keys\' holds and open calls released');
    const spent = await db.pool.query<{ scope_id: string; spent: string }>(`select scope_id, spent_nano::text as spent from spend_limits order by scope_id`);
    assert.deepEqual(spent.rows, [{ scope_id: 'a', spent: charges.a.toString() }, { scope_id: 'b-k', spent: charges.b.toString() }], 'spend limits counted');
    const low = await db.pool.query<{ n: number }>(`select count(*)::integer as n from webhook_events where type = 'balance.low' and user_id = 'c'`);
    assert.strictEqual(low.rows[0]!.n, 1, 'balance.low for the user the batch took below its threshold');
    const report = await verify.verifyBooks(db.pool, { staleInFlightMs: 86_400_000, sampleMax: 5, rollups: true });
    assert.true(report.ok, `verify --rollups is clean: ${JSON.stringify(report.breaches)}`);
  });

  QUnit.test('a batch that fails fails whole: nothing of it lands', async (assert) => {
    const admitted = await setUp();
    const [a1] = admitted.get('a')!;
    const [b1] = admitted.get('b')!;
    // 9e18 × 1.25 leaves bigint: Postgres refuses the statement (22003).
    const error = await ledger.settleUsages(db.pool, [
      { requestId: b1!, upstreamCostNano: 1_000n, generationId: null, promptTokens: 1, completionTokens: 1 },
      { requestId: a1!, upstreamCostNano: 9_000_000_000_000_000_000n, generationId: null, promptTokens: 1, completionTokens: 1 },
    ]).then(() => null, (e: unknown) => e);
    assert.strictEqual((error as { code?: string } | null)?.code, '22003', 'numeric out of range');
    const states = await db.pool.query<{ state: string }>(`select state from requests where id = any($1::uuid[])`, [[a1, b1]]);
    assert.deepEqual(states.rows.map((r) => r.state), ['in_flight', 'in_flight'], 'both still open');
    const entries = await db.pool.query<{ n: number }>(`select count(*)::integer as n from ledger_entries where kind = 'usage'`);
    assert.strictEqual(entries.rows[0]!.n, 0, 'no usage entry');
  });
});
