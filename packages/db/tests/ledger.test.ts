import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { ledger, requests, sqlState, SqlState, users } from '@metergate/db';
import { balanceBreaches, createTestDatabase, type TestDatabase } from '@metergate/testkit';
import { prng, randomBigint, settle, within } from './helpers.js';

interface Totals { balance: bigint; credits: bigint; usage: bigint }

async function totals(db: TestDatabase, userId: string): Promise<Totals> {
  const user = await users.getUser(db.pool, userId);
  if (user === null) throw new Error(`no user ${userId}`);
  return { balance: user.balanceNano, credits: user.creditsNano, usage: user.usageNano };
}

async function ledgerSum(db: TestDatabase, userId: string): Promise<bigint> {
  const result = await db.pool.query<{ sum: string }>(
    'select coalesce(sum(amount_nano), 0)::text as sum from ledger_entries where user_id = $1::text', [userId]);
  return BigInt(result.rows[0]!.sum);
}

async function openRequest(db: TestDatabase, userId: string): Promise<string> {
  const id = randomUUID();
  await requests.insertRequest(db.pool, { id, userId, replicaId: 'ledger-test', model: 'test/model', stream: true });
  return id;
}

function usage(requestId: string, costNano: bigint): ledger.UsageSettlement {
  return { requestId, upstreamCostNano: costNano, generationId: `gen-${requestId}`, promptTokens: 10, completionTokens: 20 };
}

/**
 * What a user on the default price is charged for an upstream cost: ceil(cost × ppm / 1e6) with
 * the database's default multiplier (1.0 unless an operator changed it; pricing has its own tests).
 */
async function chargeFor(db: TestDatabase): Promise<(costNano: bigint) => bigint> {
  const result = await db.pool.query<{ ppm: string | null }>(
    `select case when to_regclass('pricing_settings') is null then null
                 else (select default_multiplier_ppm::text from pricing_settings) end as ppm`);
  const ppm = BigInt(result.rows[0]?.ppm ?? 1_000_000);
  return (costNano) => (costNano * ppm + 999_999n) / 1_000_000n;
}

async function sqlStateOf(promise: Promise<unknown>): Promise<string | undefined> {
  const outcome = await settle(promise);
  return outcome.ok ? 'no error' : sqlState(outcome.error);
}

QUnit.module('ledger SQL (real Postgres)', (hooks) => {
  let db: TestDatabase;
  let charge: (costNano: bigint) => bigint;
  hooks.before(async () => {
    db = await createTestDatabase();
    charge = await chargeFor(db);
  });
  hooks.after(async () => { await db.drop(); });

  QUnit.test('appendCredit: grants and adjustments update the running totals in the same statement', async (assert) => {
    assert.notStrictEqual(await users.insertUser(db.pool, 'credit'), null);
    const grant = await ledger.appendCredit(db.pool, { userId: 'credit', kind: 'grant', amountNano: 5_000_000_000n, note: 'top-up' });
    assert.strictEqual(grant?.kind, 'grant');
    assert.strictEqual(grant?.amountNano, 5_000_000_000n);
    assert.strictEqual(grant?.balanceAfterNano, 5_000_000_000n);
    assert.strictEqual(grant?.note, 'top-up');
    assert.strictEqual(grant?.requestId, null);
    assert.deepEqual(await totals(db, 'credit'), { balance: 5_000_000_000n, credits: 5_000_000_000n, usage: 0n });
    const down = await ledger.appendCredit(db.pool, { userId: 'credit', kind: 'adjustment', amountNano: -1_000_000_001n, note: 'refund reversal' });
    assert.strictEqual(down?.balanceAfterNano, 3_999_999_999n);
    const up = await ledger.appendCredit(db.pool, { userId: 'credit', kind: 'adjustment', amountNano: 1n, note: null });
    assert.strictEqual(up?.balanceAfterNano, 4_000_000_000n);
    assert.deepEqual(await totals(db, 'credit'), { balance: 4_000_000_000n, credits: 4_000_000_000n, usage: 0n });
    assert.strictEqual(await ledgerSum(db, 'credit'), 4_000_000_000n);
    assert.strictEqual(await ledger.appendCredit(db.pool, { userId: 'nobody', kind: 'grant', amountNano: 1n, note: null }), null, 'unknown user → null');
    await assert.rejects(ledger.appendCredit(db.pool, { userId: 'credit', kind: 'grant', amountNano: 0n, note: null }), /grant must be positive/);
    assert.strictEqual(await users.readBalance(db.pool, 'credit'), 4_000_000_000n);
    assert.strictEqual(await users.readBalance(db.pool, 'nobody'), null);
  });

  QUnit.test('settleUsage settles exactly once; a second settle returns null', async (assert) => {
    await users.insertUser(db.pool, 'once');
    await ledger.appendCredit(db.pool, { userId: 'once', kind: 'grant', amountNano: 1_000_000n, note: null });
    const requestId = await openRequest(db, 'once');
    const entry = await ledger.settleUsage(db.pool, usage(requestId, 1_800n));
    const charged = charge(1_800n);
    assert.strictEqual(entry?.kind, 'usage');
    assert.strictEqual(entry?.amountNano, -charged);
    assert.strictEqual(entry?.upstreamCostNano, 1_800n);
    assert.strictEqual(entry?.balanceAfterNano, 1_000_000n - charged);
    assert.strictEqual(entry?.requestId, requestId);
    assert.strictEqual(entry?.generationId, `gen-${requestId}`);
    assert.strictEqual(entry?.model, 'test/model');
    assert.deepEqual([entry?.promptTokens, entry?.completionTokens], [10, 20]);
    assert.strictEqual(await ledger.settleUsage(db.pool, usage(requestId, 1_800n)), null, 'second settle → null');
    const request = await requests.getRequest(db.pool, requestId);
    assert.deepEqual([request?.state, request?.costNano], ['settled', '1800']);
    assert.deepEqual(await totals(db, 'once'), { balance: 1_000_000n - charged, credits: 1_000_000n, usage: charged });
    assert.strictEqual(await ledger.settleUsage(db.pool, usage(randomUUID(), 5n)), null, 'unknown request → null');
    const failed = await openRequest(db, 'once');
    await requests.markFailed(db.pool, failed, 'upstream 500 before output');
    assert.strictEqual(await ledger.settleUsage(db.pool, usage(failed, 5n)), null, 'a failed request is not open');
    await assert.rejects(ledger.settleUsage(db.pool, usage(failed, -1n)), /cannot be negative/);
    assert.deepEqual(await totals(db, 'once'), { balance: 1_000_000n - charged, credits: 1_000_000n, usage: charged });
  });

  QUnit.test("recordGenerationId 'async': commits without waiting for the flush, for its own transaction only", async (assert) => {
    await users.insertUser(db.pool, 'genid');
    const client = await db.pool.connect();
    try {
      await client.query('set synchronous_commit = on');
      const first = await openRequest(db, 'genid');
      // Inside a transaction the setting can be read back: off for this transaction only.
      await client.query('begin');
      await requests.recordGenerationId(client, first, 'gen-async', 'async');
      const inside = await client.query<{ mode: string }>(`select current_setting('synchronous_commit') as mode`);
      await client.query('commit');
      assert.strictEqual(inside.rows[0]?.mode, 'off', 'async: synchronous_commit off in its transaction');
      // On its own (its own implicit transaction, as the proxy runs it) nothing leaks to the pooled session.
      const second = await openRequest(db, 'genid');
      await requests.recordGenerationId(client, second, 'gen-async-2', 'async');
      const after = await client.query<{ mode: string }>(`select current_setting('synchronous_commit') as mode`);
      assert.strictEqual(after.rows[0]?.mode, 'on', 'the session keeps its setting afterwards');
      await client.query('begin');
      await requests.recordGenerationId(client, second, 'gen-durable', 'durable');
      const durable = await client.query<{ mode: string }>(`select current_setting('synchronous_commit') as mode`);
      await client.query('commit');
      assert.strictEqual(durable.rows[0]?.mode, 'on', "durable: the server's setting is kept");
      const ids = await db.pool.query<{ id: string; generation_id: string }>(
        'select id::text, generation_id from requests where id = any($1::uuid[]) order by generation_id', [[first, second]]);
      assert.deepEqual(ids.rows.map((r) => r.generation_id), ['gen-async', 'gen-durable'], 'both ids recorded and visible');
    } finally {
      client.release();
    }
  });

  QUnit.test('recordGenerationIds: several requests in one statement; an id already there is left alone', async (assert) => {
    await users.insertUser(db.pool, 'genids');
    const ids = [await openRequest(db, 'genids'), await openRequest(db, 'genids'), await openRequest(db, 'genids')];
    await requests.recordGenerationId(db.pool, ids[0]!, 'gen-0');
    await requests.recordGenerationIds(db.pool, ids.map((requestId, i) => ({ requestId, generationId: `gen-${i}` })).reverse(), 'async');
    const rows = await db.pool.query<{ id: string; generation_id: string }>(
      'select id::text, generation_id from requests where id = any($1::uuid[])', [ids]);
    const byId = new Map(rows.rows.map((r) => [r.id, r.generation_id]));
    assert.deepEqual(ids.map((id) => byId.get(id)), ['gen-0', 'gen-1', 'gen-2'], 'each request its own id');
    await assert.rejects(requests.recordGenerationIds(db.pool, []), /1 to 256/, 'an empty batch is a programmer error');
  });

  QUnit.test('10 concurrent settles of the same request write exactly one ledger row', async (assert) => {
    await users.insertUser(db.pool, 'race');
    await ledger.appendCredit(db.pool, { userId: 'race', kind: 'grant', amountNano: 1_000_000n, note: null });
    const pool = new pg.Pool({ connectionString: db.url, max: 10 });
    pool.on('error', () => undefined);
    try {
      for (let round = 0; round < 3; round += 1) {
        const requestId = await openRequest(db, 'race');
        // Connect all ten first so the settles really start together.
        const clients = await Promise.all(Array.from({ length: 10 }, () => pool.connect()));
        try {
          const outcomes = await within(10_000, Promise.all(clients.map((c) => ledger.settleUsage(c, usage(requestId, 777n)))));
          assert.strictEqual(outcomes.filter((o) => o !== null).length, 1, `round ${round}: one winner`);
        } finally {
          for (const c of clients) c.release();
        }
        const rows = await db.pool.query<{ n: number }>('select count(*)::integer as n from ledger_entries where request_id = $1::uuid', [requestId]);
        assert.strictEqual(rows.rows[0]!.n, 1);
      }
      assert.deepEqual(await totals(db, 'race'), { balance: 1_000_000n - 3n * charge(777n), credits: 1_000_000n, usage: 3n * charge(777n) });
    } finally {
      await pool.end();
    }
  });

  QUnit.test('balance = Σ ledger (and each balance_after is the running sum) after a random mixed sequence', async (assert) => {
    const random = prng(20_240_602);
    const ids = ['mix-a', 'mix-b', 'mix-c'];
    const expected = new Map<string, Totals>();
    for (const id of ids) {
      await users.insertUser(db.pool, id);
      expected.set(id, { balance: 0n, credits: 0n, usage: 0n });
    }
    const kinds = { grant: 0, adjustment: 0, usage: 0 };
    for (let step = 0; step < 150; step += 1) {
      const id = ids[Math.floor(random() * ids.length)]!;
      const want = expected.get(id)!;
      const pick = random();
      if (pick < 0.25) {
        const amount = 1n + randomBigint(random, 10_000_000_000n);
        await ledger.appendCredit(db.pool, { userId: id, kind: 'grant', amountNano: amount, note: null });
        want.balance += amount; want.credits += amount; kinds.grant += 1;
      } else if (pick < 0.4) {
        const amount = randomBigint(random, 2_000_000_000n) - 1_000_000_000n;
        await ledger.appendCredit(db.pool, { userId: id, kind: 'adjustment', amountNano: amount, note: 'adj' });
        want.balance += amount; want.credits += amount; kinds.adjustment += 1;
      } else {
        const cost = randomBigint(random, 3_000_000_000n); // includes 0 and overdrafts
        const entry = await ledger.settleUsage(db.pool, usage(await openRequest(db, id), cost));
        assert.notStrictEqual(entry, null);
        want.balance -= charge(cost); want.usage += charge(cost); kinds.usage += 1;
      }
    }
    assert.true(kinds.grant > 0 && kinds.adjustment > 0 && kinds.usage > 0, JSON.stringify(kinds));
    for (const id of ids) {
      assert.deepEqual(await totals(db, id), expected.get(id), `${id} totals`);
      assert.strictEqual(await ledgerSum(db, id), expected.get(id)!.balance, `${id}: Σ ledger`);
      const rows = await db.pool.query<{ amount: string; after: string }>(
        'select amount_nano::text as amount, balance_after_nano::text as after from ledger_entries where user_id = $1::text order by id', [id]);
      let running = 0n;
      const wrong = rows.rows.filter((row) => { running += BigInt(row.amount); return BigInt(row.after) !== running; });
      assert.strictEqual(wrong.length, 0, `${id}: balance_after_nano is the running sum`);
    }
    assert.deepEqual(await balanceBreaches(db.pool), []);
  });

  QUnit.test('overage is recorded: the balance goes negative, never capped', async (assert) => {
    await users.insertUser(db.pool, 'over');
    await ledger.appendCredit(db.pool, { userId: 'over', kind: 'grant', amountNano: 1_000n, note: null });
    const entry = await ledger.settleUsage(db.pool, usage(await openRequest(db, 'over'), 5_000n));
    const charged = charge(5_000n);
    assert.true(charged > 1_000n, 'the charge exceeds the balance');
    assert.strictEqual(entry?.amountNano, -charged);
    assert.strictEqual(entry?.balanceAfterNano, 1_000n - charged);
    assert.true(entry!.balanceAfterNano < 0n, 'negative, not capped at zero');
    assert.deepEqual(await totals(db, 'over'), { balance: 1_000n - charged, credits: 1_000n, usage: charged });
    const again = await ledger.settleUsage(db.pool, usage(await openRequest(db, 'over'), 1n));
    assert.strictEqual(again?.balanceAfterNano, 1_000n - charged - charge(1n), 'a later settle still lands');
  });

  QUnit.test('ledger_entries is append-only: UPDATE and DELETE fail with SQLSTATE MGL01', async (assert) => {
    await users.insertUser(db.pool, 'frozen');
    const entry = await ledger.appendCredit(db.pool, { userId: 'frozen', kind: 'grant', amountNano: 10n, note: null });
    assert.strictEqual(await sqlStateOf(db.pool.query('update ledger_entries set note = $2::text where id = $1::bigint', [entry!.id, 'x'])), SqlState.ledgerAppendOnly);
    assert.strictEqual(await sqlStateOf(db.pool.query('delete from ledger_entries where id = $1::bigint', [entry!.id])), SqlState.ledgerAppendOnly);
    assert.strictEqual(await ledgerSum(db, 'frozen'), 10n, 'the row is untouched');
  });

  QUnit.test('check constraints reject a positive usage row, a non-positive grant and a drifting total', async (assert) => {
    await users.insertUser(db.pool, 'checks');
    const insert = (kind: string, amount: bigint, requestId: string | null): Promise<unknown> => db.pool.query(
      `insert into ledger_entries (user_id, kind, amount_nano, balance_after_nano, request_id)
       values ('checks', $1::text, $2::bigint, 0, $3::uuid)`, [kind, amount.toString(), requestId]);
    const requestId = await openRequest(db, 'checks');
    assert.strictEqual(await sqlStateOf(insert('usage', 5n, requestId)), SqlState.checkViolation, 'positive usage');
    assert.strictEqual(await sqlStateOf(insert('usage', -5n, null)), SqlState.checkViolation, 'usage without a request');
    assert.strictEqual(await sqlStateOf(insert('grant', 0n, null)), SqlState.checkViolation, 'zero grant');
    assert.strictEqual(await sqlStateOf(insert('grant', -1n, null)), SqlState.checkViolation, 'negative grant');
    assert.strictEqual(await sqlStateOf(insert('bonus', 1n, null)), SqlState.checkViolation, 'unknown kind');
    assert.strictEqual(await sqlStateOf(db.pool.query(`update users set balance_nano = balance_nano + 1 where id = 'checks'`)),
      SqlState.checkViolation, 'balance must equal credits - usage');
    assert.strictEqual(await sqlStateOf(insert('usage', -5n, requestId)), 'no error', 'the well-formed row is accepted (control)');
  });

  QUnit.test('listLedger: newest first, filtered by user, keyset pagination', async (assert) => {
    await users.insertUser(db.pool, 'pages');
    const ids: string[] = [];
    for (let i = 1; i <= 5; i += 1) {
      ids.push((await ledger.appendCredit(db.pool, { userId: 'pages', kind: 'grant', amountNano: BigInt(i), note: `#${i}` }))!.id);
    }
    const query = { userId: 'pages', since: null, until: null, beforeId: null, limit: 2 };
    const first = await ledger.listLedger(db.pool, query);
    assert.deepEqual(first.map((e) => e.note), ['#5', '#4']);
    const second = await ledger.listLedger(db.pool, { ...query, beforeId: first.at(-1)!.id });
    assert.deepEqual(second.map((e) => e.note), ['#3', '#2']);
    const all = await ledger.listLedger(db.pool, { ...query, limit: 100 });
    assert.deepEqual(all.map((e) => e.id), [...ids].reverse());
    assert.true(all.every((e) => e.userId === 'pages'));
    const future = await ledger.listLedger(db.pool, { ...query, since: new Date(Date.now() + 3_600_000) });
    assert.deepEqual(future, []);
  });
});
