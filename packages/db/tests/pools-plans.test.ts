// The hot pools reuse one generic plan per prepared statement; the admin pool plans per query.
// Real Postgres: pg_prepared_statements counts, per session, how each statement was planned.
import { randomUUID } from 'node:crypto';
import { connectionWithOptions, costLockKey, keys, ledger, requests, users, type Queryable } from '@metergate/db';
import { createTestDatabase, type TestDatabase } from '@metergate/testkit';
import type pg from 'pg';
import { replica } from './helpers.js';

/** More than the 5 custom plans Postgres always makes before it may switch to the generic one. */
const CALLS = 8;

async function admitAndSettle(db: Queryable, userId: string, keyId: string): Promise<void> {
  for (let i = 0; i < CALLS; i += 1) {
    const id = randomUUID();
    const outcomes = await requests.admitCalls(db, {
      mode: 'reserve', lockKey: costLockKey(userId), userId, replicaId: 'plans', minBalanceNano: 0n, now: null,
      calls: [{ id, model: 'test/model', stream: false, upstreamHoldNano: 1_000n, holdCompletionTokens: 10, keyId }],
    });
    if (outcomes.get(id)?.admitted !== true) throw new Error(`call ${i} was not admitted`);
    const entry = await ledger.settleUsage(db, {
      requestId: id, upstreamCostNano: 700n, generationId: `gen-${id}`, promptTokens: 3, completionTokens: 5,
    });
    if (entry === null) throw new Error(`call ${i} did not settle`);
  }
}

async function plans(client: pg.PoolClient): Promise<Map<string, { generic: number; custom: number }>> {
  const result = await client.query<{ name: string; generic_plans: string; custom_plans: string }>(
    `select name, generic_plans, custom_plans from pg_prepared_statements where name = any($1::text[])`,
    [['mg_admit_calls', 'mg_settle']],
  );
  return new Map(result.rows.map((r) => [r.name, { generic: Number(r.generic_plans), custom: Number(r.custom_plans) }]));
}

QUnit.module('pools: plan modes', (hooks) => {
  let db: TestDatabase;
  hooks.before(async () => { db = await createTestDatabase(); });
  hooks.after(async () => { await db.drop(); });

  QUnit.test('connectionWithOptions keeps the operator\'s options and adds the pool\'s', (assert) => {
    const url = 'postgres://u:p@127.0.0.1:5432/db';
    const added = new URL(connectionWithOptions(url, undefined, '-c a=1').connectionString);
    assert.strictEqual(added.searchParams.get('options'), '-c a=1');
    const own = new URL(connectionWithOptions(`${url}?options=-c%20b%3D2`, '-c ignored=1', '-c a=1').connectionString);
    assert.strictEqual(own.searchParams.get('options'), '-c b=2 -c a=1', 'the URL\'s options win over PGOPTIONS, as in pg');
    const env = new URL(connectionWithOptions(url, '-c c=3', '-c a=1').connectionString);
    assert.strictEqual(env.searchParams.get('options'), '-c c=3 -c a=1');
    assert.deepEqual(connectionWithOptions(url, undefined, null), { connectionString: url }, 'nothing to add: untouched');
    assert.deepEqual(connectionWithOptions('not a url', '-c c=3', '-c a=1'), { connectionString: 'not a url', options: '-c c=3 -c a=1' });
  });

  QUnit.test('admission and settle reuse a generic plan on the write pool, and are planned per call on the admin pool', async (assert) => {
    const userId = `plans-${randomUUID().slice(0, 8)}`;
    await users.insertUser(db.pool, userId);
    await ledger.appendCredit(db.pool, { userId, kind: 'grant', amountNano: 1_000_000_000n, note: null });
    await keys.insertKey(db.pool, { id: `${userId}-k`, userId, hash: Buffer.from(userId) });
    const url = new URL(db.url);
    url.searchParams.set('options', '-c work_mem=7MB');
    const { pools } = replica(url.toString(), 'plans', { writePoolSize: 1 });
    const hot = await pools.write.connect();
    const admin = await pools.admin.connect();
    try {
      await admitAndSettle(hot, userId, `${userId}-k`);
      await admitAndSettle(admin, userId, `${userId}-k`);
      const show = async (c: pg.PoolClient, name: string) => (await c.query<Record<string, string>>(`show ${name}`)).rows[0]![name];
      assert.strictEqual(await show(hot, 'plan_cache_mode'), 'force_generic_plan');
      assert.strictEqual(await show(admin, 'plan_cache_mode'), 'auto');
      assert.strictEqual(await show(hot, 'work_mem'), '7MB', 'the URL\'s own options still apply on the hot pools');
      assert.strictEqual(await show(admin, 'work_mem'), '7MB');
      const hotPlans = await plans(hot);
      for (const name of ['mg_admit_calls', 'mg_settle']) {
        assert.deepEqual(hotPlans.get(name), { generic: CALLS, custom: 0 }, `${name}: one generic plan, reused`);
      }
      // Why the hot pools force it: left to choose, Postgres re-plans the admission on every
      // call (the settle it switches to the generic plan after its 5 custom ones).
      const admission = (await plans(admin)).get('mg_admit_calls');
      assert.deepEqual(admission, { generic: 0, custom: CALLS }, 'the admission: a custom plan every call on the admin pool');
    } finally {
      hot.release();
      admin.release();
      await pools.end();
    }
  });
});
