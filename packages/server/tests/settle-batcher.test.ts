// The settle batcher on real Postgres: settles arriving together share statements; two
// "replicas" settling overlapping users at once neither deadlock nor lose a nano; a request the
// database refuses fails alone while the rest of its batch lands.
import { randomUUID } from 'node:crypto';
import { costLockKey, ledger, requests, users, verify, type UsageSettlement } from '@metergate/db';
import { createTestDatabase, type TestDatabase } from '@metergate/testkit';
import pg from 'pg';
import { SettleBatcher } from '../src/billing/settle-batcher.js';

const USERS = Array.from({ length: 10 }, (_, i) => `sb${i}`);
const GRANT_NANO = 1_000_000_000n;

/** A pool whose statements are counted. */
function countingPool(url: string): { pool: pg.Pool; statements: () => number } {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on('error', () => undefined);
  let n = 0;
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => { n += 1; return query(...args); };
  return { pool, statements: () => n };
}

async function admit(db: TestDatabase, userId: string, n: number): Promise<string[]> {
  const calls = Array.from({ length: n }, () => ({ id: randomUUID(), model: 'm', stream: false, upstreamHoldNano: 50_000n, holdCompletionTokens: 1 }));
  const held = await requests.admitBatch(db.pool, { userId, replicaId: 'sb', minBalanceNano: 0n, lockKey: costLockKey(userId), calls });
  if (held.size !== n) throw new Error(`${userId}: ${held.size} of ${n} admitted`);
  return calls.map((c) => c.id);
}

const usage = (requestId: string, upstreamCostNano: bigint): UsageSettlement =>
  ({ requestId, upstreamCostNano, generationId: `gen-${requestId}`, promptTokens: 2, completionTokens: 3 });

QUnit.module('settle batcher', (hooks) => {
  let db: TestDatabase;
  hooks.beforeEach(async () => {
    db = await createTestDatabase();
    for (const id of USERS) {
      await users.insertUser(db.pool, id);
      await ledger.appendCredit(db.pool, { userId: id, kind: 'grant', amountNano: GRANT_NANO, note: null });
    }
  });
  hooks.afterEach(async () => { await db.drop(); });

  QUnit.test('two replicas, 120 settles of 10 users at once: fewer statements, exact books', async (assert) => {
    const ids: string[] = [];
    for (const userId of USERS) ids.push(...await admit(db, userId, 12));
    const shuffled = [...ids].sort(() => Math.random() - 0.5);
    const replicas = [countingPool(db.url), countingPool(db.url)];
    const batchers = replicas.map((r) => new SettleBatcher(r.pool, { batchMax: 16, batchesInFlightMax: 2 }));
    try {
      const costOf = (i: number) => BigInt(1_000 + i);
      const results = await Promise.all(shuffled.map((id, i) => batchers[i % 2]!.settle(usage(id, costOf(i)))));
      assert.strictEqual(results.filter((r) => r !== null).length, ids.length, 'every request settled once');
      const statements = replicas[0]!.statements() + replicas[1]!.statements();
      assert.true(statements < ids.length / 4, `${ids.length} settles took ${statements} statements`);
      const total = shuffled.reduce((sum, _, i) => sum + costOf(i), 0n);
      const { rows } = await db.pool.query<{ usage: string }>(`select sum(usage_nano)::text as usage from users`);
      assert.strictEqual(rows[0]!.usage, total.toString(), 'usage = Σ costs (multiplier 1)');
      const report = await verify.verifyBooks(db.pool, { staleInFlightMs: 86_400_000, sampleMax: 5, rollups: true });
      assert.true(report.ok, `verify --rollups is clean: ${JSON.stringify(report.breaches)}`);
    } finally {
      await Promise.all(replicas.map((r) => r.pool.end()));
    }
  });

  QUnit.test('a request the database refuses fails alone; the rest of its batch settles', async (assert) => {
    const ids = [...await admit(db, 'sb0', 3), ...await admit(db, 'sb1', 3)];
    const { pool, statements } = countingPool(db.url);
    const batcher = new SettleBatcher(pool, { batchMax: 16, batchesInFlightMax: 1 });
    try {
      // The first goes out alone at once; the other five wait behind it and leave together.
      const poison = ids[3]!;
      const outcomes = await Promise.allSettled(ids.map((id) => batcher.settle(usage(id, id === poison ? 9_300_000_000_000_000_000n : 500n))));
      const rejected = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [[ids[i], (o.reason as { code?: string }).code]] : []));
      assert.deepEqual(rejected, [[poison, '22003']], 'only the refused request fails, with Postgres\'s reason');
      assert.strictEqual(outcomes.filter((o) => o.status === 'fulfilled' && o.value !== null).length, 5, 'the other five settled');
      assert.strictEqual(statements(), 1 + 1 + 5, 'one alone, one batch that failed, then each of the five alone');
      const open = await db.pool.query<{ id: string }>(`select id from requests where state = 'in_flight'`);
      assert.deepEqual(open.rows.map((r) => r.id), [poison], 'the refused request is still open, its hold kept');
      const report = await verify.verifyBooks(db.pool, { staleInFlightMs: 86_400_000, sampleMax: 5, rollups: true });
      assert.true(report.ok, `books clean: ${JSON.stringify(report.breaches)}`);
    } finally {
      await pool.end();
    }
  });
});
