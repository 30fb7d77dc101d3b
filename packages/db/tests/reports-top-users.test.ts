import { periods, reports, type Queryable } from '@metergate/db';
import { createTestDatabase, type TestDatabase } from '@metergate/testkit';
import { ensureUser, insertTimed, ledgerUsage, prng, type Expected, type TimedEntry } from './reports-fixtures.js';

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
/** A Monday (ISO weeks start there). */
const MONDAY = Date.UTC(2025, 8, 1);

type Row = [key: string, charged: bigint, requests: number, prompt: number, completion: number, upstream: bigint];

/** The order usageSummary promises: most charged first, ties by user id (ASCII ids: byte order). */
function ranked(expected: Map<string, Expected>): Row[] {
  return [...expected].map(([key, e]): Row => [key, e.charged, e.requests, e.prompt, e.completion, e.upstream])
    .sort((a, b) => (a[1] === b[1] ? (a[0] < b[0] ? -1 : 1) : a[1] > b[1] ? -1 : 1));
}

function rows(top: reports.UsageRow[]): Row[] {
  return top.map((u): Row => [u.key, u.chargedNano, u.requests, u.promptTokens, u.completionTokens, u.upstreamCostNano]);
}

function bigints(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

QUnit.module('reports: top users bounded by covering weeks or months (real Postgres)', (hooks) => {
  let db: TestDatabase;
  const random = prng(47);
  const start = MONDAY - 40 * DAY_MS;
  const end = MONDAY + 75 * DAY_MS;
  hooks.before(async () => {
    db = await createTestDatabase();
    // 400 users over 115 days, skewed like the benchmark seed (user index ~ N·r²: a few heavy
    // users, a long tail), charges from one nano to a few thousand, some zero, many equal.
    const entries: TimedEntry[] = [];
    for (let u = 1; u <= 400; u += 1) await ensureUser(db.pool, `t${String(u).padStart(3, '0')}`);
    for (let i = 0; i < 6000; i += 1) {
      const r = random();
      const user = `t${String(1 + Math.floor(400 * r * r)).padStart(3, '0')}`;
      const charged = random() < 0.05 ? 0n : BigInt(1 + Math.floor(random() * random() * 4000));
      entries.push({ userId: user, kind: 'usage', amountNano: -charged, upstreamCostNano: charged, model: 'm/t', at: new Date(start + Math.floor(random() * (end - start))) });
    }
    entries.sort((a, b) => a.at.getTime() - b.at.getTime());
    await insertTimed(db.pool, entries);
  });
  hooks.after(async () => { await db.drop(); });

  function range(): { since: Date | null; until: Date | null } {
    const lengthMs = 6 * DAY_MS + Math.floor(random() * random() * 60 * DAY_MS);
    const since = start - 5 * DAY_MS + Math.floor(random() * (end - start));
    const open = random();
    return { since: open < 0.05 ? null : new Date(since), until: open > 0.95 ? null : new Date(since + lengthMs) };
  }

  QUnit.test('over random ranges and limits the bound decides mostly, and every decided top is exact', async (assert) => {
    let decided = 0;
    let wrong = 0;
    const depth = { rowsFirst: 16, rowsLast: 64, sumsMax: 100_000 };
    for (let i = 0; i < 120; i += 1) {
      const { since, until } = range();
      const limit = 1 + Math.floor(random() * 12);
      const truth = ranked(await ledgerUsage(db.pool, 'user_id', { since, until })).slice(0, limit);
      const top = await reports.boundedTopUsersOf(db.pool, { since, until }, limit, depth);
      if (top === null) continue;
      decided += 1;
      if (JSON.stringify(rows(top), bigints) !== JSON.stringify(truth, bigints)) {
        wrong += 1;
        if (wrong <= 3) assert.deepEqual(rows(top), truth, `${since?.toISOString()}..${until?.toISOString()} limit ${limit}`);
      }
    }
    assert.strictEqual(wrong, 0, 'every decided top equals the top of the full sums, every measure');
    assert.true(decided >= 60, `${decided} of 120 ranges decided by the bound`);
  });

  QUnit.test('usageSummary by user over random ranges equals the full sums (bounded or not)', async (assert) => {
    let mismatched = 0;
    for (let i = 0; i < 60; i += 1) {
      const { since, until } = range();
      const limit = 1 + Math.floor(random() * 40);
      const truth = ranked(await ledgerUsage(db.pool, 'user_id', { since, until })).slice(0, limit);
      const top = await reports.usageSummary(db.pool, { groupBy: 'user', since, until, limit });
      const got = rows(top);
      if (JSON.stringify(got, bigints) !== JSON.stringify(truth, bigints)) {
        mismatched += 1;
        if (mismatched <= 3) assert.deepEqual(got, truth, `${since?.toISOString()}..${until?.toISOString()} limit ${limit}`);
      }
    }
    assert.strictEqual(mismatched, 0, 'every summary is the exact top');
  });
});

QUnit.module('reports: UTC periods agree with Postgres date_trunc', (hooks) => {
  let db: TestDatabase;
  hooks.before(async () => { db = await createTestDatabase(); });
  hooks.after(async () => { await db.drop(); });

  QUnit.test('floorTo and nextPeriod give the buckets the rollups are keyed by', async (assert) => {
    const random = prng(5);
    const instants = [0, -1, Date.UTC(1969, 11, 29), Date.UTC(2024, 1, 29, 23, 59, 59, 999), MONDAY, MONDAY - 1];
    for (let i = 0; i < 300; i += 1) instants.push(Math.floor((random() - 0.3) * 4e12));
    const kinds = ['hour', 'day', 'week', 'month'] as const;
    const result = await db.pool.query<Record<string, Date[]>>(
      `select array_agg(date_trunc('hour', t, 'UTC') order by o) as hour, array_agg(date_trunc('day', t, 'UTC') order by o) as day,
              array_agg(date_trunc('week', t, 'UTC') order by o) as week, array_agg(date_trunc('month', t, 'UTC') order by o) as month
         from unnest($1::timestamptz[]) with ordinality u (t, o)`, [instants.map((ms) => new Date(ms))]);
    let wrong = 0;
    for (const period of kinds) {
      instants.forEach((ms, index) => {
        const floor = periods.floorTo(period, new Date(ms));
        const next = periods.nextPeriod(period, floor);
        const expected = result.rows[0]![period]![index]!;
        if (floor.getTime() !== expected.getTime() || !(floor.getTime() <= ms && ms < next.getTime())) wrong += 1;
        if (periods.floorTo(period, next).getTime() !== next.getTime()) wrong += 1;
      });
    }
    assert.strictEqual(wrong, 0, `${instants.length} instants × 4 periods`);
  });
});

QUnit.module('reports: a bound equal to a charge never excludes', (hooks) => {
  let db: TestDatabase;
  hooks.before(async () => { db = await createTestDatabase(); });
  hooks.after(async () => { await db.drop(); });

  QUnit.test('an unread user equal to the last winner, with a smaller id, is found', async (assert) => {
    // The range, Mon 06:00 to Sun 12:00, lies in one ISO week; everything else in that week is
    // spent on Monday at 01:00 or Sunday at 18:00, outside it. The week's list by charge, ties
    // by id: w9 100 (60 in the range), f1 90, f2 80, f3 60 | w5 60, w7 60 (all 60 in the range).
    // Read 4 deep, the unread bound is f3's 60, equal to w9's charge: not decided. Read 16
    // deep, w7 and w9 tie at 60 and w7 comes first; w7's bound (60) equals the charge to beat.
    const entries: TimedEntry[] = [];
    const add = (userId: string, charged: bigint, at: number) =>
      entries.push({ userId, kind: 'usage', amountNano: -charged, upstreamCostNano: charged, model: 'm/x', at: new Date(at) });
    const mondayEarly = MONDAY + HOUR_MS;
    const sundayLate = MONDAY + 6 * DAY_MS + 18 * HOUR_MS;
    for (const id of ['w9', 'w7', 'w5', 'f1', 'f2', 'f3']) await ensureUser(db.pool, id);
    add('w9', 40n, mondayEarly); add('w9', 60n, MONDAY + 2 * DAY_MS);
    add('w7', 60n, MONDAY + 3 * DAY_MS);
    add('w5', 60n, sundayLate);
    add('f1', 50n, mondayEarly); add('f1', 40n, sundayLate); add('f2', 80n, mondayEarly); add('f3', 60n, mondayEarly);
    entries.sort((a, b) => a.at.getTime() - b.at.getTime());
    await insertTimed(db.pool, entries);
    const since = new Date(MONDAY + 6 * HOUR_MS);
    const until = new Date(MONDAY + 6 * DAY_MS + 12 * HOUR_MS);
    const truth = ranked(await ledgerUsage(db.pool, 'user_id', { since, until }));
    assert.deepEqual(truth.map((u) => [u[0], u[1]]), [['w7', 60n], ['w9', 60n]], 'the fixture is what it says');
    const attempts: string[] = [];
    const spy: Queryable = { query: ((text: string, values?: unknown[]) => {
      if (text.includes('floors as materialized')) attempts.push(String(values?.[0]));
      return db.pool.query(text, values);
    }) as Queryable['query'] };
    const top = await reports.boundedTopUsersOf(spy, { since, until }, 1, { rowsFirst: 4, rowsLast: 16, sumsMax: 100 });
    assert.deepEqual(top?.map((u) => [u.key, u.chargedNano]), [['w7', 60n]]);
    assert.deepEqual(attempts, ['4', '16'], 'lists read 4 deep did not decide; 16 deep did');
    const summary = await reports.usageSummary(db.pool, { groupBy: 'user', since, until, limit: 1 });
    assert.deepEqual(summary.map((row) => [row.key, row.chargedNano]), [['w7', 60n]]);
  });
});
