// The threshold algorithm for top users (reports.thresholdTopUsers) against the plain ranking
// over the ledger, on ranges of every shape. Small starting depths force it to read deeper and
// to stop on the bound rather than by reading everything, so both exits are exercised.
import { reports } from '@metergate/db';
import { createTestDatabase, type TestDatabase } from '@metergate/testkit';
import { ensureUser, insertTimed, pick, prng, type TimedEntry } from './reports-fixtures.js';

const DAY_MS = 86_400_000;
const START = Date.UTC(2026, 0, 20);
const SPAN_DAYS = 45;

QUnit.module('reports: exact top users by the threshold algorithm', (hooks) => {
  let db: TestDatabase;
  const random = prng(23);
  const userIds = Array.from({ length: 60 }, (_, i) => `ta-${String(i).padStart(2, '0')}`);

  hooks.before(async () => {
    db = await createTestDatabase();
    for (const id of userIds) await ensureUser(db.pool, id);
    const entries: TimedEntry[] = [];
    for (let i = 0; i < 3000; i += 1) {
      // Skewed: low indexes spend far more often; amounts repeat so ties happen.
      const user = userIds[Math.floor(random() ** 3 * userIds.length)]!;
      const charged = BigInt(pick(random, [100, 250, 1000, 1000, 5000, 77_777]));
      const at = new Date(START + Math.floor(random() * SPAN_DAYS * DAY_MS));
      entries.push({ userId: user, kind: 'usage', amountNano: -charged, model: pick(random, ['m/a', 'm/b', null]), at });
    }
    entries.sort((a, b) => a.at.getTime() - b.at.getTime());
    await insertTimed(db.pool, entries);
  });
  hooks.after(async () => { await db.drop(); });

  async function expectedTop(since: Date, until: Date, limit: number): Promise<string[]> {
    const result = await db.pool.query<{ user_id: string }>(
      `select user_id from ledger_entries
        where kind = 'usage' and created_at >= $1::timestamptz and created_at < $2::timestamptz
        group by user_id order by sum(-amount_nano) desc, user_id limit $3::integer`,
      [since, until, limit],
    );
    return result.rows.map((row) => row.user_id);
  }

  function instant(): Date {
    const t = START - DAY_MS + Math.floor(random() * (SPAN_DAYS + 2) * DAY_MS);
    const shape = Math.floor(random() * 3);
    return shape === 0 ? reports.floorTo('day', new Date(t)) : shape === 1 ? reports.floorTo('hour', new Date(t)) : new Date(t);
  }

  QUnit.test('equals the full ranking on random ranges, limits and starting depths', async (assert) => {
    let compared = 0;
    let answered = 0;
    let mismatched = 0;
    for (let i = 0; i < 60; i += 1) {
      let since = instant();
      let until = instant();
      if (since.getTime() === until.getTime()) continue;
      if (since > until) [since, until] = [until, since];
      for (const limit of [1, 3, 10]) {
        for (const depth of [1, 2, 5, 200]) {
          const actual = await reports.thresholdTopUsers(db.pool, { groupBy: 'user', since, until, limit }, depth);
          compared += 1;
          if (actual === null) continue;
          answered += 1;
          const expected = await expectedTop(since, until, limit);
          if (JSON.stringify(actual) !== JSON.stringify(expected)) {
            mismatched += 1;
            if (mismatched <= 3) assert.deepEqual(actual, expected, `${since.toISOString()} .. ${until.toISOString()} limit ${limit} depth ${depth}`);
          }
        }
      }
    }
    assert.true(compared > 500, `${compared} rankings compared`);
    assert.strictEqual(answered, compared, 'the walk answered every ranking (no fallback needed at this size)');
    assert.strictEqual(mismatched, 0, 'every top list is exactly the plain ranking, ties by id');
  });

  QUnit.test('stops on the bound after reading a few users per day, not every active user', async (assert) => {
    // Its own stretch of time, after the data above: 400 small users every day, 3 whales.
    const from = START + 60 * DAY_MS;
    const small = Array.from({ length: 400 }, (_, i) => `tb-${String(i).padStart(3, '0')}`);
    const whales = ['tw-1', 'tw-2', 'tw-3'];
    for (const id of [...small, ...whales]) await ensureUser(db.pool, id);
    const entries: TimedEntry[] = [];
    for (let day = 0; day < 10; day += 1) {
      const at = new Date(from + day * DAY_MS + 12 * 3_600_000);
      for (const id of small) entries.push({ userId: id, kind: 'usage', amountNano: -100n, model: 'm/a', at });
      whales.forEach((id, rank) => entries.push({ userId: id, kind: 'usage', amountNano: -BigInt(1_000_000 * (3 - rank)), model: 'm/b', at }));
    }
    await insertTimed(db.pool, entries);
    const since = new Date(from + 3_600_000 * 5 + 123_000);
    const until = new Date(from + 9 * DAY_MS + 3_600_000 * 15);
    const exactCalls: unknown[][] = [];
    const spy = {
      query: (text: string, values?: unknown[]) => {
        if (text.includes('any(')) exactCalls.push(values ?? []);
        return db.pool.query(text, values);
      },
    };
    const top = await reports.thresholdTopUsers(spy as unknown as typeof db.pool, { groupBy: 'user', since, until, limit: 3 }, 3);
    assert.deepEqual(top, ['tw-1', 'tw-2', 'tw-3']);
    assert.deepEqual(top, await expectedTop(since, until, 3));
    assert.strictEqual(exactCalls.length, 1, 'settled by the bound at the first depth');
    const summed = exactCalls[0]!.find((value) => Array.isArray(value)) as string[];
    assert.true(summed.length < 20, `${summed.length} users summed exactly out of ${small.length + whales.length} active`);
  });

  QUnit.test('usageSummary by user uses it and stays exact with an open end', async (assert) => {
    const since = new Date(START + 10 * DAY_MS + 3_600_000 * 13);
    const actual = await reports.usageSummary(db.pool, { groupBy: 'user', since, until: null, limit: 5 });
    assert.deepEqual(actual.map((row) => row.key), await expectedTop(since, new Date(Date.UTC(2100, 0, 1)), 5));
  });
});
