// admitMany: several users' admissions in one statement. Each user is decided as if alone:
// its own balance, holds, limits and arrival order; a user that does not exist gets nothing.
import { randomUUID } from 'node:crypto';
import { controls, costLockKey, keys, ledger, requests, users, verify, type BatchCall } from '@metergate/db';
import { createTestDatabase, type TestDatabase } from '@metergate/testkit';

const call = (upstreamHoldNano: bigint, keyId: string | null = null): BatchCall =>
  ({ id: randomUUID(), model: 'm', stream: false, upstreamHoldNano, holdCompletionTokens: 1, keyId });

QUnit.module('requests: admitting several users in one statement', (hooks) => {
  let db: TestDatabase;
  hooks.beforeEach(async () => {
    db = await createTestDatabase();
    for (const [id, grant] of [['rich', 1_000_000n], ['poor', 100n], ['keyed', 1_000_000n]] as const) {
      await users.insertUser(db.pool, id);
      await ledger.appendCredit(db.pool, { userId: id, kind: 'grant', amountNano: grant, note: null });
    }
    await db.pool.query(`update users set multiplier_ppm = 2000000 where id = 'rich'`);
    await keys.insertKey(db.pool, { id: 'keyed-k', userId: 'keyed', hash: Buffer.from('keyed-k') });
    await controls.putControls(db.pool, { kind: 'key', id: 'keyed-k' }, { concurrentCalls: 1 }, null);
  });
  hooks.afterEach(async () => { await db.drop(); });

  QUnit.test('each user decided on its own books, in its own order; an unknown user gets no outcome', async (assert) => {
    const rich = [call(100_000n), call(200_000n), call(300_000n)]; // holds ×2: 200k + 400k + 600k > 1M: the third refused
    const poor = [call(101n), call(1n)];                               // both refused: holds count in arrival order
    const keyed = [call(1_000n, 'keyed-k'), call(1_000n, 'keyed-k')];  // the key's one concurrent call
    const ghost = [call(1n)];
    const outcomes = await requests.admitMany(db.pool, {
      mode: 'reserve', replicaId: 'many', minBalanceNano: 0n, now: null,
      users: [
        { userId: 'poor', lockKey: costLockKey('poor'), calls: poor },
        { userId: 'ghost', lockKey: costLockKey('ghost'), calls: ghost },
        { userId: 'rich', lockKey: costLockKey('rich'), calls: rich },
        { userId: 'keyed', lockKey: costLockKey('keyed'), calls: keyed },
      ],
    });
    const show = (m: Map<string, unknown>, calls: BatchCall[]) => calls.map((c) => {
      const o = m.get(c.id) as { admitted: boolean; holdNano?: bigint; refusal?: { kind: string } } | undefined;
      return o === undefined ? 'none' : o.admitted ? `held ${o.holdNano}` : o.refusal!.kind;
    });
    assert.deepEqual(show(outcomes[0]!, poor), ['insufficient_credits', 'insufficient_credits']);
    assert.deepEqual(show(outcomes[1]!, ghost), ['none']);
    assert.deepEqual(show(outcomes[2]!, rich), ['held 200000', 'held 400000', 'insufficient_credits'], 'the user\'s multiplier, its own balance');
    assert.deepEqual(show(outcomes[3]!, keyed), ['held 1000', 'concurrent_calls']);
    const held = await db.pool.query<{ id: string; held: string; open: number }>(`select id, held_nano::text as held, open_calls as open from users order by id`);
    assert.deepEqual(held.rows, [{ id: 'keyed', held: '1000', open: 1 }, { id: 'poor', held: '0', open: 0 }, { id: 'rich', held: '600000', open: 2 }]);
    const rows = await db.pool.query<{ n: number }>(`select count(*)::integer as n from requests`);
    assert.strictEqual(rows.rows[0]!.n, 3, 'a request row per admitted call');
    const report = await verify.verifyBooks(db.pool, { staleInFlightMs: 86_400_000, sampleMax: 5 });
    assert.true(report.ok, `books clean: ${JSON.stringify(report.breaches)}`);
  });

  QUnit.test('40 statements of overlapping users in random orders at once: no deadlock, holds exact', async (assert) => {
    const ids = ['rich', 'poor', 'keyed'];
    const statements = Array.from({ length: 40 }, (_, i) => requests.admitMany(db.pool, {
      mode: 'reserve', replicaId: 'many', minBalanceNano: 0n, now: null,
      users: [...ids].sort(() => Math.random() - 0.5).slice(0, 2 + (i % 2)).map((userId) => ({
        userId, lockKey: costLockKey(userId), calls: [call(7n)],
      })),
    }));
    const settled = await Promise.allSettled(statements);
    assert.deepEqual(settled.filter((s) => s.status === 'rejected').map((s) => String((s as PromiseRejectedResult).reason)), [], 'every statement completed');
    const report = await verify.verifyBooks(db.pool, { staleInFlightMs: 86_400_000, sampleMax: 5 });
    assert.true(report.ok, `held = Σ open holds for every user: ${JSON.stringify(report.breaches)}`);
  });
});
