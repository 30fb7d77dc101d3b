import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  acquireClient, CostBarrier, ledger, PoolTimeoutError, requests, users, type Queryable,
} from '@metergate/db';
import { balanceBreaches, createTestDatabase, ledgerUsageNano, type TestDatabase } from '@metergate/testkit';
import pg from 'pg';
import { counters, IDLE, replica, settle, sleep, within } from './helpers.js';

const GRANT_NANO = 1_000_000_000n;

/** validate → (upstream) → save, as the proxy does it: admission on the holder, settle on `settlePool`. */
async function meteredCall(client: Queryable, settlePool: Queryable, userId: string, costNano: bigint, upstreamMs: number): Promise<bigint> {
  const balance = await users.readBalance(client, userId);
  if (balance === null || balance <= 0n) throw new Error(`${userId} not admitted`);
  const requestId = randomUUID();
  await requests.insertRequest(settlePool, { id: requestId, userId, replicaId: 'pools-test', model: 'test/model', stream: false });
  await sleep(upstreamMs); // the upstream call
  const entry = await ledger.settleUsage(settlePool, {
    requestId, upstreamCostNano: costNano, generationId: `gen-${requestId}`, promptTokens: 3, completionTokens: 5,
  });
  if (entry === null) throw new Error('settle matched no open request');
  return entry.balanceAfterNano;
}

QUnit.module('pools: lock holders never starve settles (issue 2 deadlock property)', (hooks) => {
  let db: TestDatabase;
  hooks.before(async () => { db = await createTestDatabase(); });
  hooks.after(async () => { await db.drop(); });

  QUnit.test('6 active users on a 2-client lock pool all complete, settling on the write pool', async (assert) => {
    const lockPoolSize = 2;
    const userIds = ['p1', 'p2', 'p3', 'p4', 'p5', 'p6'];
    const callsPerUser = 2;
    const upstreamMs = 150;
    const { pools, barrier } = replica(db.url, 'deadlock-ok', { lockPoolSize, writePoolSize: 2, acquireTimeoutMs: 10_000 });
    try {
      for (const id of userIds) {
        await users.insertUser(db.pool, id);
        await ledger.appendCredit(db.pool, { userId: id, kind: 'grant', amountNano: GRANT_NANO, note: null });
      }
      let maxPinned = 0;
      const began = performance.now();
      const calls = userIds.flatMap((id, u) => Array.from({ length: callsPerUser }, (_, i) =>
        barrier.withUserCostLock(id, async ({ client }) => {
          maxPinned = Math.max(maxPinned, barrier.pinned);
          return meteredCall(client, pools.write, id, BigInt(1_000 * (u + 1) + i), upstreamMs);
        })));
      const outcomes = await within(15_000, Promise.all(calls.map(settle)), 'all metered calls (a deadlock would hang here)');
      const elapsed = performance.now() - began;
      assert.deepEqual(outcomes.filter((o) => !o.ok), [], 'every call completed');
      assert.strictEqual(maxPinned, lockPoolSize, 'the lock pool was saturated: more active users than lock clients');
      // Serial would be 12 × 150 ms; with 2 holders at a time it is about half that.
      assert.true(elapsed < userIds.length * callsPerUser * upstreamMs, `finished in ${elapsed.toFixed(0)} ms`);
      for (const [u, id] of userIds.entries()) {
        const expected = BigInt(1_000 * (u + 1)) * BigInt(callsPerUser) + BigInt(callsPerUser * (callsPerUser - 1) / 2);
        const landed = await db.pool.query<{ n: number; upstream: string }>(
          `select count(*)::integer as n, coalesce(sum(upstream_cost_nano), 0)::text as upstream
             from ledger_entries where user_id = $1::text and kind = 'usage'`, [id]);
        assert.deepEqual(landed.rows[0], { n: callsPerUser, upstream: expected.toString() }, `${id}: every settle landed`);
      }
      assert.deepEqual(await balanceBreaches(db.pool), []);
      assert.deepEqual(counters(barrier), IDLE);
    } finally {
      await pools.end();
    }
  });

  QUnit.test('one shared pool WOULD deadlock: holders pinning every client starve their own settles', async (assert) => {
    const poolSize = 2;
    const shared = new pg.Pool({ connectionString: db.url, max: poolSize, application_name: 'mgtest-shared' });
    shared.on('error', () => undefined);
    const barrier = new CostBarrier({
      pool: shared, acquireTimeoutMs: 5_000, lockTimeoutMs: 5_000, queueWaitMs: 10_000, queueDepthMax: 10, holdMsMax: 20_000,
    });
    const settleTimeoutMs = 500;
    try {
      const userIds = ['s1', 's2'];
      for (const id of userIds) {
        await users.insertUser(db.pool, id);
        await ledger.appendCredit(db.pool, { userId: id, kind: 'grant', amountNano: GRANT_NANO, note: null });
      }
      // Rendezvous: both holders are inside (both clients pinned) before either settles, and
      // neither leaves (freeing its client) before both settle attempts have given up.
      const arrive = (count: number) => {
        let arrived = 0;
        let all!: () => void;
        const done = new Promise<void>((resolve) => { all = resolve; });
        return async () => {
          arrived += 1;
          if (arrived === count) all();
          await within(5_000, done, 'rendezvous');
        };
      };
      const bothInside = arrive(userIds.length);
      const bothTried = arrive(userIds.length);
      let waitingForClient = 0;
      const calls = userIds.map((id) => barrier.withUserCostLock(id, async ({ client }) => {
        await bothInside();
        const balance = await users.readBalance(client, id);
        assert.true(balance !== null && balance > 0n, `${id} admitted`);
        const pending = settle(acquireClient(shared, 'write', settleTimeoutMs));
        await sleep(50);
        waitingForClient = Math.max(waitingForClient, shared.waitingCount);
        const attempt = await pending; // never succeeds: every client is a lock holder's
        await bothTried();
        if (!attempt.ok) throw attempt.error;
        attempt.value.release();
        return 'settled';
      }));
      const outcomes = await within(10_000, Promise.all(calls.map(settle)));
      assert.strictEqual(shared.totalCount, poolSize, 'the pool was at its maximum');
      assert.true(waitingForClient >= 1, `settles queued behind the holders (${waitingForClient} waiting)`);
      for (const outcome of outcomes) {
        assert.true(!outcome.ok && outcome.error instanceof PoolTimeoutError, 'the settle could not get a client');
      }
      // Without the acquire timeout nothing would ever free a client; the timeout makes the
      // failure visible, and no usage was recorded for either user.
      assert.strictEqual(await ledgerUsageNano(db.pool, 's1') + await ledgerUsageNano(db.pool, 's2'), 0n);
      assert.deepEqual(counters(barrier), IDLE);
    } finally {
      await shared.end();
    }
  });
});
