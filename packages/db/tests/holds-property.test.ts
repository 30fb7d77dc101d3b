// Property test on real Postgres: random interleavings of admit (both modes' statements, one
// user's or several users' at once),
// settle (alone and several in one statement), fail, defer (awaiting_cost), unresolved, void, operator settle, grants and "crashes"
// (a request simply abandoned in flight), several at a time. After every round:
// held_nano = Σ holds of open requests and balance = Σ ledger, for every user (verify's checks);
// with keys and controls (0010): open-call counts of users and keys and keys' holds = their open
// requests, whatever limits refuse.
import { randomUUID } from 'node:crypto';
import { controls, keys, ledger, requests, users, verify } from '@metergate/db';
import { createTestDatabase, type TestDatabase } from '@metergate/testkit';
import { prng } from './helpers.js';

const USERS = ['p1', 'p2', 'p3'];
const ROUNDS = 60;
const OPS_PER_ROUND = 6;

QUnit.module('holds: property (random operation sequences)', (hooks) => {
  let db: TestDatabase;
  hooks.before(async () => {
    db = await createTestDatabase();
    for (const id of USERS) {
      await users.insertUser(db.pool, id);
      await ledger.appendCredit(db.pool, { userId: id, kind: 'grant', amountNano: 50_000n, note: null });
      for (const k of [1, 2]) await keys.insertKey(db.pool, { id: `${id}-k${k}`, userId: id, hash: Buffer.from(`${id}-k${k}`) });
    }
    // Limits that refuse some calls (on keys only, so most calls still open requests): concurrency
    // on one of p1's keys, a lifetime spend limit and a rate on one of p3's.
    await controls.putControls(db.pool, { kind: 'key', id: 'p1-k2' }, { concurrentCalls: 2 }, null);
    await controls.putControls(db.pool, { kind: 'key', id: 'p3-k1' }, { spend: [{ period: 'never', amountNano: 80_000n }], requestsPerMinute: 60 }, null);
    await db.pool.query(`update users set multiplier_ppm = 1250000 where id = 'p2'`);
  });
  hooks.after(async () => { await db.drop(); });

  for (const seed of [1, 2, 3]) {
    QUnit.test(`seed ${seed}: held = Σ open holds and balance = Σ ledger after every round`, async (assert) => {
      const random = prng(seed);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
      const amount = (max: number) => BigInt(Math.floor(random() * max));
      // Keys from a stream of their own, so the operations' sequence is the one each seed always had.
      const keyRandom = prng(seed + 1000);
      const keyOf = (userId: string): string | null => [null, `${userId}-k1`, `${userId}-k2`][Math.floor(keyRandom() * 3)]!;
      const open = async (states: string[]): Promise<string | null> => {
        const { rows } = await db.pool.query<{ id: string }>('select id from requests where state = any($1::text[]) order by random() limit 1', [states]);
        return rows[0]?.id ?? null;
      };
      const ops: Array<() => Promise<unknown>> = [
        async () => {
          const userId = pick(USERS);
          return requests.admitRequest(db.pool, { id: randomUUID(), userId, replicaId: 'prop', model: 'm', stream: true, keyId: keyOf(userId) },
            { minBalanceNano: 0n, upstreamHoldNano: amount(20_000), holdCompletionTokens: 1 });
        },
        async () => {
          const userId = pick(USERS);
          const calls = Array.from({ length: 1 + Math.floor(random() * 5) }, () => ({
            id: randomUUID(), model: 'm', stream: false, upstreamHoldNano: amount(15_000), holdCompletionTokens: 1, keyId: keyOf(userId),
          }));
          return requests.admitBatch(db.pool, { userId, replicaId: 'prop', minBalanceNano: 0n, lockKey: BigInt(userId.charCodeAt(1)), calls });
        },
        async () => {
          // Several users' admissions in one statement, as the admission batcher sends them.
          const chosen = USERS.filter(() => random() < 0.6);
          if (chosen.length === 0) return null;
          return requests.admitMany(db.pool, {
            mode: 'reserve', replicaId: 'prop', minBalanceNano: 0n, now: null,
            users: chosen.sort(() => random() - 0.5).map((userId) => ({
              userId, lockKey: BigInt(userId.charCodeAt(1)), probe: random() < 0.3,
              calls: Array.from({ length: 1 + Math.floor(random() * 3) }, () => ({
                id: randomUUID(), model: 'm', stream: false, upstreamHoldNano: amount(15_000), holdCompletionTokens: 1, keyId: keyOf(userId),
              })),
            })),
          });
        },
        async () => { const id = await open(['in_flight', 'awaiting_cost', 'unresolved']); if (id) await ledger.settleUsage(db.pool, { requestId: id, upstreamCostNano: amount(25_000), generationId: null, promptTokens: 1, completionTokens: 1 }); },
        async () => {
          // Several open requests (of one user or many) in one settle statement, as the settle batcher sends them.
          const { rows } = await db.pool.query<{ id: string }>(
            `select id from requests where state = any($1::text[]) order by random() limit $2::integer`,
            [['in_flight', 'awaiting_cost', 'unresolved'], 1 + Math.floor(random() * 4)]);
          if (rows.length > 0) {
            await ledger.settleUsages(db.pool, rows.map((r) => ({ requestId: r.id, upstreamCostNano: amount(25_000), generationId: null, promptTokens: 1, completionTokens: 1 })));
          }
        },
        async () => { const id = await open(['in_flight', 'awaiting_cost']); if (id) await requests.markFailed(db.pool, id, 'prop'); },
        async () => { const id = await open(['in_flight']); if (id) await requests.markAwaitingCost(db.pool, id, { generationId: `gen-${id}`, reason: 'prop', nextLookupAt: new Date() }); },
        async () => { const id = await open(['in_flight', 'awaiting_cost']); if (id) await requests.markUnresolved(db.pool, id, 'prop', null); },
        async () => { const id = await open(['unresolved', 'awaiting_cost']); if (id) await requests.voidRequest(db.pool, id, 'prop'); },
        async () => { const id = await open(['unresolved']); if (id) await ledger.settleUsage(db.pool, { requestId: id, upstreamCostNano: amount(9_000), generationId: null, promptTokens: null, completionTokens: null }, { operatorNote: 'prop' }); },
        async () => ledger.appendCredit(db.pool, { userId: pick(USERS), kind: 'grant', amountNano: 1n + amount(30_000), note: null }),
        async () => undefined, // a crash: whatever is in flight is simply abandoned
      ];
      let breaches = 0;
      // States seen after any round (open ones come and go; the end alone may have none left).
      const seen = new Set<string>();
      for (let round = 0; round < ROUNDS; round += 1) {
        // Several at once: concurrent statements on the same users' rows.
        await Promise.all(Array.from({ length: OPS_PER_ROUND }, () => pick(ops)()));
        const report = await verify.verifyBooks(db.pool, { staleInFlightMs: 86_400_000, sampleMax: 5 });
        const bad = report.breaches.held.count + report.breaches.balance.count + report.breaches.settledWithoutOneUsage.count
          + report.breaches.controls.count;
        if (bad > 0 && breaches === 0) assert.pushResult({ result: false, actual: report.breaches, expected: 'no breach', message: `round ${round}` });
        breaches += bad;
        const reached = await db.pool.query<{ state: string }>('select distinct state from requests');
        for (const row of reached.rows) seen.add(row.state);
      }
      assert.strictEqual(breaches, 0, `no breach in ${ROUNDS} rounds of ${OPS_PER_ROUND} concurrent operations`);
      const states = await db.pool.query<{ state: string; n: number }>('select state, count(*)::integer as n from requests group by state order by state');
      assert.true(seen.size >= 4, `the sequence reached several states: ${[...seen].sort().join(', ')} (at the end: ${JSON.stringify(states.rows)})`);
      const { rows } = await db.pool.query<{ negative: number }>('select count(*)::integer as negative from users where held_nano < 0');
      assert.strictEqual(rows[0]!.negative, 0, 'held is never negative');
    });
  }
});
