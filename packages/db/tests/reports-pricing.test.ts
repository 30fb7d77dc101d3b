import { pricing, requests, sqlState, SqlState, users } from '@metergate/db';
import { balanceBreaches, createTestDatabase, type TestDatabase } from '@metergate/testkit';
import { ensureUser, prng, settleNew } from './reports-fixtures.js';

/** ceil(upstream × ppm / 1e6) worked out independently of pricing.chargeFor (remainder test). */
function ceilPriced(upstream: bigint, ppm: bigint): bigint {
  const product = upstream * ppm;
  const quotient = product / 1_000_000n;
  return product % 1_000_000n === 0n ? quotient : quotient + 1n;
}

QUnit.module('reports: pricing (real Postgres)', (hooks) => {
  let db: TestDatabase;
  hooks.before(async () => { db = await createTestDatabase(); });
  hooks.after(async () => { await db.drop(); });

  QUnit.test('parseMultiplier is exact and refuses anything that is not a plain positive decimal ≤ 1000', (assert) => {
    assert.strictEqual(pricing.parseMultiplier('1.25'), 1_250_000n);
    assert.strictEqual(pricing.parseMultiplier('1'), 1_000_000n);
    assert.strictEqual(pricing.parseMultiplier(' 0.000001 '), 1n);
    assert.strictEqual(pricing.parseMultiplier('1000'), 1_000_000_000n);
    assert.strictEqual(pricing.parseMultiplier('2.5'), 2_500_000n);
    assert.strictEqual(pricing.formatMultiplier(1_250_000n), '1.250000');
    assert.strictEqual(pricing.formatMultiplier(1n), '0.000001');
    for (const bad of ['0', '0.0000001', '-1', '1e3', '1,5', '', 'abc', '1000.000001', '1.', '.5', 'NaN', '12345']) {
      assert.throws(() => pricing.parseMultiplier(bad), pricing.MultiplierFormatError, `refuses ${JSON.stringify(bad)}`);
    }
  });

  QUnit.test('the default multiplier 1.25: charged = ceil(upstream × 1.25), rounded up; both amounts kept', async (assert) => {
    await ensureUser(db.pool, 'dflt');
    assert.strictEqual((await pricing.getPricing(db.pool)).defaultPpm, 1_000_000n, 'the default starts at ×1');
    await pricing.setDefaultMultiplier(db.pool, pricing.parseMultiplier('1.25'));
    // 1 → 1.25 → 2 (rounded up); 4 → 5 exactly; 3 → 3.75 → 4; 0 → 0; a large cost stays exact.
    const cases: Array<[bigint, bigint]> = [[1n, 2n], [4n, 5n], [3n, 4n], [0n, 0n], [1_800n, 2_250n], [9_007_199_254_740_993n, 11_258_999_068_426_242n]];
    for (const [upstream, charged] of cases) {
      const entry = await settleNew(db.pool, 'dflt', 'm/a', upstream);
      assert.strictEqual(entry.upstreamCostNano, upstream, `upstream ${upstream} kept`);
      assert.strictEqual(entry.amountNano, -charged, `charged ${charged} for ${upstream}`);
      assert.strictEqual(entry.multiplierPpm, 1_250_000n, 'the multiplier applied is recorded');
      const request = await requests.getRequest(db.pool, entry.requestId!);
      assert.strictEqual(request?.costNano, upstream.toString(), 'the request keeps what the upstream billed');
    }
    assert.deepEqual(await balanceBreaches(db.pool), [], 'balance = Σ ledger');
    await pricing.setDefaultMultiplier(db.pool, 1_000_000n);
  });

  QUnit.test('a per-user override wins over the default; clearing it returns to the default', async (assert) => {
    await ensureUser(db.pool, 'over');
    await ensureUser(db.pool, 'plain');
    await pricing.setDefaultMultiplier(db.pool, 1_250_000n);
    assert.true(await pricing.setUserMultiplier(db.pool, 'over', 1_500_000n));
    assert.false(await pricing.setUserMultiplier(db.pool, 'nobody', 1_500_000n), 'unknown user → false');
    assert.deepEqual(await pricing.getPricing(db.pool, 'over'),
      { defaultPpm: 1_250_000n, userPpm: 1_500_000n, effectivePpm: 1_500_000n, updatedAt: (await pricing.getPricing(db.pool)).updatedAt, userExists: true });
    assert.strictEqual((await settleNew(db.pool, 'over', 'm/a', 1_001n)).amountNano, -1_502n, 'ceil(1001 × 1.5) = 1502');
    assert.strictEqual((await settleNew(db.pool, 'plain', 'm/a', 1_001n)).amountNano, -1_252n, 'ceil(1001 × 1.25) = 1252');
    assert.true(await pricing.setUserMultiplier(db.pool, 'over', null));
    assert.strictEqual((await pricing.getPricing(db.pool, 'over')).effectivePpm, 1_250_000n);
    assert.strictEqual((await settleNew(db.pool, 'over', 'm/a', 1_001n)).amountNano, -1_252n, 'back to the default');
    const before = await users.getUser(db.pool, 'over');
    assert.strictEqual(before?.usageNano, 1_502n + 1_252n, "the user's usage total is the sum charged");
    assert.deepEqual(await balanceBreaches(db.pool), []);
    await pricing.setDefaultMultiplier(db.pool, 1_000_000n);
  });

  QUnit.test('random costs and multipliers: SQL pricing equals ceil(upstream × ppm / 1e6) exactly, never below', async (assert) => {
    const random = prng(5);
    await ensureUser(db.pool, 'rnd');
    let mismatches = 0;
    for (let i = 0; i < 60; i += 1) {
      const ppm = 1n + BigInt(Math.floor(random() * 3_000_000));
      const upstream = BigInt(Math.floor(random() * 10 ** Math.floor(random() * 12)));
      await pricing.setUserMultiplier(db.pool, 'rnd', ppm);
      const entry = await settleNew(db.pool, 'rnd', 'm/r', upstream);
      const expected = ceilPriced(upstream, ppm);
      if (-entry.amountNano !== expected || -entry.amountNano !== pricing.chargeFor(upstream, ppm)) mismatches += 1;
      // Never undercharged: charged × 1e6 ≥ upstream × ppm, and less than one nano above it.
      if (-entry.amountNano * 1_000_000n < upstream * ppm || (-entry.amountNano - 1n) * 1_000_000n >= upstream * ppm) mismatches += 1;
    }
    assert.strictEqual(mismatches, 0, 'every charge is the exact ceiling');
    assert.deepEqual(await balanceBreaches(db.pool), []);
  });

  QUnit.test('the database refuses a multiplier out of range even if the API were bypassed', async (assert) => {
    await ensureUser(db.pool, 'range');
    const state = (sql: string) => db.pool.query(sql).then(() => 'no error', (error: unknown) => sqlState(error));
    assert.strictEqual(await state(`update users set multiplier_ppm = 0 where id = 'range'`), SqlState.checkViolation);
    assert.strictEqual(await state('update pricing_settings set default_multiplier_ppm = 1000000001'), SqlState.checkViolation);
    assert.strictEqual(await state('insert into pricing_settings (singleton) values (false)'), SqlState.checkViolation);
    assert.strictEqual(await state(`update users set multiplier_ppm = 1000000000 where id = 'range'`), 'no error', 'the maximum itself is allowed (control)');
  });
});
