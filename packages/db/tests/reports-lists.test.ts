import { randomUUID } from 'node:crypto';
import { ledger, pricing, reports, requests, type RequestState, type UserListQuery } from '@metergate/db';
import { createTestDatabase, type TestDatabase } from '@metergate/testkit';
import { ensureUser, prng, settleNew } from './reports-fixtures.js';

QUnit.module('reports: users and requests lists (real Postgres)', (hooks) => {
  let db: TestDatabase;
  const random = prng(3);
  hooks.before(async () => {
    db = await createTestDatabase();
    for (let i = 0; i < 23; i += 1) {
      const id = `user-${String(i).padStart(2, '0')}`;
      await ensureUser(db.pool, id);
      // Several users share a balance (ties on the sort value need the id to break them).
      await ledger.appendCredit(db.pool, { userId: id, kind: 'grant', amountNano: BigInt(1 + (i % 5)) * 1_000n, note: null });
      if (i % 3 === 0) await settleNew(db.pool, id, 'm/a', BigInt(Math.floor(random() * 4_000)));
    }
    await pricing.setUserMultiplier(db.pool, 'user-04', 2_000_000n);
  });
  hooks.after(async () => { await db.drop(); });

  async function expectedUsers(q: UserListQuery): Promise<string[]> {
    const column = { balance: 'balance_nano', spend: 'usage_nano', id: null }[q.sort];
    const order = column === null ? `id ${q.order}` : `${column} ${q.order}, id ${q.order}`;
    const result = await db.pool.query<{ id: string }>(
      `select id from users where ($1::bigint is null or balance_nano < $1::bigint) order by ${order}`,
      [q.balanceBelowNano?.toString() ?? null],
    );
    return result.rows.map((row) => row.id);
  }

  QUnit.test('users: every sort and order, with and without the low-balance filter, pages cover each user once', async (assert) => {
    for (const sort of ['balance', 'spend', 'id'] as const) {
      for (const order of ['asc', 'desc'] as const) {
        for (const balanceBelowNano of [null, 3_000n, -1n]) {
          const q = { sort, order, balanceBelowNano, limit: 4 };
          const seen: string[] = [];
          let cursor: string | null = null;
          for (let pages = 0; pages < 50; pages += 1) {
            const page: Awaited<ReturnType<typeof reports.listUsers>> = await reports.listUsers(db.pool, { ...q, cursor });
            seen.push(...page.users.map((user) => user.id));
            cursor = page.nextCursor;
            if (cursor === null) break;
          }
          assert.deepEqual(seen, await expectedUsers(q), `${sort} ${order} below ${balanceBelowNano}`);
        }
      }
    }
  });

  QUnit.test('users: rows carry spend and the multiplier; bad or foreign cursors are refused', async (assert) => {
    const { users: [top] } = await reports.listUsers(db.pool, { sort: 'spend', order: 'desc', limit: 1 });
    assert.true(top !== undefined && top.spendNano > 0n && top.spendNano === top.usageNano, 'spend = usage total');
    const four = (await reports.listUsers(db.pool, { sort: 'id', order: 'asc', limit: 100 })).users.find((u) => u.id === 'user-04');
    assert.strictEqual(four?.multiplierPpm, 2_000_000n);
    const page = await reports.listUsers(db.pool, { sort: 'balance', order: 'asc', limit: 2 });
    await assert.rejects(reports.listUsers(db.pool, { sort: 'spend', order: 'asc', limit: 2, cursor: page.nextCursor }), reports.ReportQueryError, 'a balance cursor does not page a spend listing');
    for (const bad of ['garbage', Buffer.from('[1,2]').toString('base64url'), Buffer.from('["balance","1x","a"]').toString('base64url')]) {
      await assert.rejects(reports.listUsers(db.pool, { sort: 'balance', order: 'asc', limit: 2, cursor: bad }), reports.ReportQueryError, bad);
    }
  });

  QUnit.test('requests: by state (and unsettled), by user, newest first, pages cover each request once', async (assert) => {
    const states: RequestState[] = ['in_flight', 'awaiting_cost', 'failed', 'unresolved'];
    for (let i = 0; i < 30; i += 1) {
      const id = randomUUID();
      const userId = `user-0${i % 3}`;
      await requests.insertRequest(db.pool, { id, userId, replicaId: 'lists', model: 'm/x', stream: false });
      const state = states[i % states.length]!;
      if (state === 'awaiting_cost') await requests.markAwaitingCost(db.pool, id, { generationId: null, reason: 'no usage', nextLookupAt: new Date() });
      if (state === 'failed') await requests.markFailed(db.pool, id, 'upstream 500');
      if (state === 'unresolved') await requests.markUnresolved(db.pool, id, 'no generation id');
    }
    // Identical start times: the id breaks the tie.
    await db.pool.query(`update requests set started_at = date_trunc('second', started_at) where replica_id = 'lists'`);
    for (const state of [null, 'unsettled', ...states, 'settled'] as const) {
      for (const userId of [null, 'user-01']) {
        const expected = await db.pool.query<{ id: string }>(
          `select id from requests
            where ($1::text is null or state = $1::text or ($1::text = 'unsettled' and state in ('in_flight', 'awaiting_cost', 'unresolved')))
              and ($2::text is null or user_id = $2::text)
            order by started_at desc, id desc`, [state, userId]);
        const seen: string[] = [];
        let cursor: string | null = null;
        for (let pages = 0; pages < 50; pages += 1) {
          const page: Awaited<ReturnType<typeof reports.listRequests>> = await reports.listRequests(db.pool, { state, userId, limit: 3, cursor });
          seen.push(...page.requests.map((r) => r.id));
          assert.true(page.requests.every((r) => state === null || r.state === state || (state === 'unsettled' && ['in_flight', 'awaiting_cost', 'unresolved'].includes(r.state))));
          cursor = page.nextCursor;
          if (cursor === null) break;
        }
        assert.deepEqual(seen, expected.rows.map((row) => row.id), `state ${state} user ${userId}: ${expected.rows.length}`);
      }
    }
    await assert.rejects(reports.listRequests(db.pool, { limit: 3, cursor: 'not-a-uuid' }), reports.ReportQueryError);
  });
});
