import pg from 'pg';
import { pricing, reports, type Queryable, type UsageGroup } from '@metergate/db';
import { balanceBreaches, createTestDatabase, type TestDatabase } from '@metergate/testkit';
import { ensureUser, insertTimed, ledgerUsage, pick, prng, settleNew, type Expected, type TimedEntry } from './reports-fixtures.js';

const KEY_SQL: Record<UsageGroup, string> = {
  user: 'user_id',
  model: `coalesce(model, '')`,
  day: `to_char(date_trunc('day', created_at, 'UTC') at time zone 'UTC', 'YYYY-MM-DD')`,
  hour: `to_char(date_trunc('hour', created_at, 'UTC') at time zone 'UTC', 'YYYY-MM-DD"T"HH24":00:00Z"')`,
  endpoint: `coalesce(endpoint, 'chat')`,
};

function asMap(rows: reports.UsageRow[]): Map<string, Expected> {
  return new Map(rows.map((row) => [row.key, {
    requests: row.requests, prompt: row.promptTokens, completion: row.completionTokens, upstream: row.upstreamCostNano, charged: row.chargedNano,
  }]));
}

QUnit.module('reports: rollups kept in the settle statement (real Postgres)', (hooks) => {
  let db: TestDatabase;
  hooks.before(async () => { db = await createTestDatabase(); });
  hooks.after(async () => { await db.drop(); });

  QUnit.test('after random concurrent settles every rollup equals the sums over the ledger', async (assert) => {
    const random = prng(11);
    const userIds = ['ra', 'rb', 'rc', 'rd', 're', 'rf'];
    const models = ['m/a', 'm/b', 'm/c', null];
    for (const id of userIds) await ensureUser(db.pool, id);
    await pricing.setUserMultiplier(db.pool, 'rb', 1_333_333n);
    await pricing.setDefaultMultiplier(db.pool, 1_100_000n);
    // One connection per user, all users settling at once: rows of the per-model rollups are
    // shared between users, so concurrent upserts of the same row are exercised.
    const pool = new pg.Pool({ connectionString: db.url, max: userIds.length });
    try {
      await Promise.all(userIds.map(async (userId) => {
        for (let i = 0; i < 25; i += 1) {
          const prompt = random() < 0.1 ? null : Math.floor(random() * 3000);
          await settleNew(pool, userId, pick(random, models), BigInt(Math.floor(random() * 5_000_000)), { prompt, completion: Math.floor(random() * 900) });
        }
      }));
    } finally {
      await pool.end();
      await pricing.setDefaultMultiplier(db.pool, 1_000_000n);
    }
    assert.deepEqual(await reports.rollupMismatches(db.pool), [], 'no rollup row differs from the ledger');
    const totals = await db.pool.query<{ n: string }>(
      `select count(*)::text as n from users u left join usage_user_totals t on t.user_id = u.id
        where u.usage_nano <> coalesce(t.charged_nano, 0)`);
    assert.strictEqual(totals.rows[0]!.n, '0', 'users.usage_nano equals the per-user rollup');
    const all = await ledgerUsage(db.pool, KEY_SQL.user, {});
    assert.deepEqual(asMap(await reports.usageSummary(db.pool, { groupBy: 'user', limit: 100 })), all, 'all-time per user');
    assert.deepEqual(await balanceBreaches(db.pool), []);
  });

  QUnit.test('a tampered rollup is reported (the check can fail) and usage_rollups_rebuild() repairs it', async (assert) => {
    await ensureUser(db.pool, 'tamper');
    await settleNew(db.pool, 'tamper', 'm/t', 1_000n);
    await db.pool.query(`update usage_model_daily set requests = requests + 1 where model = 'm/t'`);
    await db.pool.query(`delete from usage_user_totals where user_id = 'tamper'`);
    assert.deepEqual(await reports.rollupMismatches(db.pool), [{ table: 'usage_user_totals', rows: 1 }, { table: 'usage_model_daily', rows: 1 }]);
    await db.pool.query('select usage_rollups_rebuild()');
    assert.deepEqual(await reports.rollupMismatches(db.pool), []);
  });
});

QUnit.module('reports: usage summaries are exact for any range', (hooks) => {
  let db: TestDatabase;
  const random = prng(23);
  const userIds = ['ua', 'ub', 'uc', 'ud', 'ue'];
  const models = ['m/a', 'm/b', 'm/c', null];
  const start = Date.UTC(2025, 0, 27, 5, 17);
  const end = Date.UTC(2025, 3, 4, 19, 3);
  hooks.before(async () => {
    db = await createTestDatabase();
    for (const id of userIds) await ensureUser(db.pool, id);
    const entries: TimedEntry[] = [];
    let at = start;
    while (at < end) {
      // Bursts inside one hour and gaps of days: every rollup level and fringe is exercised.
      at += random() < 0.2 ? Math.floor(random() * 3 * 86_400_000) : Math.floor(random() * 600_000);
      const userId = pick(random, userIds);
      if (random() < 0.05) {
        entries.push({ userId, kind: random() < 0.5 ? 'grant' : 'adjustment', amountNano: 1n + BigInt(Math.floor(random() * 1e9)), at: new Date(at) });
        continue;
      }
      const upstream = BigInt(Math.floor(random() * 3_000_000));
      entries.push({
        userId, kind: 'usage', amountNano: -(upstream + BigInt(Math.floor(random() * 1000))), upstreamCostNano: upstream,
        model: pick(random, models), promptTokens: random() < 0.1 ? null : Math.floor(random() * 2000), completionTokens: Math.floor(random() * 500), at: new Date(at),
      });
    }
    await insertTimed(db.pool, entries);
  });
  hooks.after(async () => { await db.drop(); });

  /** Instants worth testing: random ones and ones on hour, day and month boundaries. */
  function instant(): Date | null {
    const t = start - 86_400_000 + Math.floor(random() * (end - start + 2 * 86_400_000));
    const kind = Math.floor(random() * 5);
    if (kind === 0) return null;
    if (kind === 1) return reports.floorTo('hour', new Date(t));
    if (kind === 2) return reports.floorTo('day', new Date(t));
    if (kind === 3) return reports.floorTo('month', new Date(t));
    return new Date(t);
  }

  QUnit.test('decompose: the pieces are disjoint and cover [since, until) exactly', (assert) => {
    const levels: Array<['month' | 'day' | 'hour', string]> = [['month', 'M'], ['day', 'D'], ['hour', 'H']];
    let failures = 0;
    for (let i = 0; i < 2000; i += 1) {
      const since = instant();
      const until = instant();
      if (since !== null && until !== null && since >= until) continue;
      const pieces = reports.decompose(since, until, levels, 'L');
      const sorted = [...pieces].sort((a, b) => (a.from?.getTime() ?? -Infinity) - (b.from?.getTime() ?? -Infinity));
      let cursor: number | null = since?.getTime() ?? null;
      let ok = sorted.length > 0;
      for (const piece of sorted) {
        if ((piece.from?.getTime() ?? null) !== cursor) ok = false;
        if (piece.from !== null && piece.to !== null && piece.from >= piece.to) ok = false;
        const unit = piece.source === 'L' ? null : (piece.source === 'M' ? 'month' : piece.source === 'D' ? 'day' : 'hour');
        if (unit !== null && [piece.from, piece.to].some((edge) => edge !== null && reports.floorTo(unit, edge).getTime() !== edge.getTime())) ok = false;
        cursor = piece.to?.getTime() ?? null;
      }
      if (cursor !== (until?.getTime() ?? null)) ok = false;
      if (!ok) failures += 1;
    }
    assert.strictEqual(failures, 0, 'every range is covered exactly once, rollup pieces aligned to their period');
  });

  QUnit.test('every grouping and filter over random ranges equals the sums over the ledger', async (assert) => {
    let compared = 0;
    let mismatched = 0;
    for (let i = 0; i < 30; i += 1) {
      const since = instant();
      const until = instant();
      if (since !== null && until !== null && since >= until) continue;
      for (const groupBy of ['user', 'model', 'day', 'hour', 'endpoint'] as const) {
        for (const filter of [{}, { userId: pick(random, userIds) }, { model: pick(random, ['m/a', 'm/b', '']) }, { userId: 'ub', model: 'm/c' }]) {
          const q = { groupBy, since, until, ...filter };
          const actual = await reports.usageSummary(db.pool, { ...q, limit: 100_000 });
          const expected = await ledgerUsage(db.pool, KEY_SQL[groupBy], q);
          compared += 1;
          const sorted = actual.every((row, index) => index === 0 || actual[index - 1]!.chargedNano >= row.chargedNano);
          if (!sorted || JSON.stringify([...asMap(actual)].sort(), bigints) !== JSON.stringify([...expected].sort(), bigints)) {
            mismatched += 1;
            if (mismatched <= 3) assert.deepEqual(asMap(actual), expected, `${JSON.stringify(q)}`);
          }
        }
      }
    }
    assert.true(compared > 300, `${compared} summaries compared`);
    assert.strictEqual(mismatched, 0, 'every summary is exact and sorted by cost');
  });

  QUnit.test('limit keeps the most charged groups; an empty range is empty', async (assert) => {
    const all = await reports.usageSummary(db.pool, { groupBy: 'hour', limit: 100_000 });
    assert.true(all.length > 10, `${all.length} hours with usage`);
    assert.deepEqual(await reports.usageSummary(db.pool, { groupBy: 'hour', limit: 5 }), all.slice(0, 5));
    const t = new Date(Date.UTC(2025, 1, 10));
    assert.deepEqual(await reports.usageSummary(db.pool, { groupBy: 'user', since: t, until: t, limit: 10 }), []);
    assert.deepEqual(await reports.usageSummary(db.pool, { groupBy: 'user', since: new Date(Date.UTC(2030, 0, 1)), limit: 10 }), []);
  });
});

function bigints(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

QUnit.module('reports: top users of one whole day or month come straight off an index', (hooks) => {
  let db: TestDatabase;
  const day0 = Date.UTC(2025, 5, 2);
  hooks.before(async () => { db = await createTestDatabase(); });
  hooks.after(async () => { await db.drop(); });

  /** Counts the statements a summary sends, and remembers them. */
  function counting(): { db: Queryable; sql: string[] } {
    const sql: string[] = [];
    return { db: { query: ((text: string, values?: unknown[]) => { sql.push(text); return db.pool.query(text, values); }) as Queryable['query'] }, sql };
  }

  function topOf(expected: Map<string, Expected>, n: number): Array<[string, Expected]> {
    return [...expected].sort(([ka, a], [kb, b]) => (a.charged === b.charged ? (ka < kb ? -1 : 1) : a.charged > b.charged ? -1 : 1)).slice(0, n);
  }

  QUnit.test('a whole day, a whole month, and "since a day or month start" up to now: one index read, equal to the full sums', async (assert) => {
    const entries: TimedEntry[] = [];
    for (let u = 1; u <= 60; u += 1) {
      await ensureUser(db.pool, `sk-${u}`);
      for (let d = 0; d < 4; d += 1) {
        // Spend falls with the user's rank, and ties (u and u+1 share a charge on odd u) need the id order.
        const charged = BigInt(Math.floor(1_000_000 / (u + (u % 2))) + d);
        entries.push({ userId: `sk-${u}`, kind: 'usage', amountNano: -charged, upstreamCostNano: charged, model: 'm/s', at: new Date(day0 + d * 86_400_000 + u * 1000) });
      }
    }
    // June 2..5 2025 (day0 .. day0 + 3d): June is both "a whole month" and "since June 1, open".
    await insertTimed(db.pool, entries);
    const cases: Array<[number, number | null, string]> = [
      [day0, day0 + 86_400_000, 'a whole day'],
      [Date.UTC(2025, 5, 1), Date.UTC(2025, 6, 1), 'a whole month'],
      [day0 + 3 * 86_400_000, null, 'since the last day began (today)'],
      [Date.UTC(2025, 5, 1), null, 'since the month began (this month)'],
    ];
    for (const [since, until, label] of cases) {
      const q = { groupBy: 'user' as const, since: new Date(since), until: until === null ? null : new Date(until), limit: 7 };
      const spy = counting();
      const top = await reports.usageSummary(spy.db, q);
      assert.deepEqual([...asMap(top)], topOf(await ledgerUsage(db.pool, KEY_SQL.user, q), 7), label);
      assert.true(spy.sql.length <= 2 && !spy.sql.some((text) => text.includes('group by')), `${label}: read, not aggregated (${spy.sql.length} statements)`);
    }
    // Not one whole period (two days; a day cut short): ranked and filled in, still exact.
    for (const [since, until] of [[day0, day0 + 2 * 86_400_000], [day0, day0 + 86_400_000 - 1]] as const) {
      const q = { groupBy: 'user' as const, since: new Date(since), until: new Date(until), limit: 7 };
      const spy = counting();
      assert.deepEqual([...asMap(await reports.usageSummary(spy.db, q))], topOf(await ledgerUsage(db.pool, KEY_SQL.user, q), 7));
      assert.true(spy.sql.some((text) => text.includes('group by')), 'aggregated');
    }
  });

  QUnit.test('a user steady across days beats users who each spike on one day (ranked over the whole range)', async (assert) => {
    const entries: TimedEntry[] = [];
    await ensureUser(db.pool, 'steady');
    const start = day0 + 30 * 86_400_000;
    for (let d = 0; d < 3; d += 1) {
      for (let i = 0; i < 40; i += 1) {
        const id = `spike-${d}-${i}`;
        await ensureUser(db.pool, id);
        entries.push({ userId: id, kind: 'usage', amountNano: -1000n, model: 'm/p', at: new Date(start + d * 86_400_000 + i) });
      }
      entries.push({ userId: 'steady', kind: 'usage', amountNano: -400n, model: 'm/p', at: new Date(start + d * 86_400_000 + 5_000) });
    }
    await insertTimed(db.pool, entries);
    const top = await reports.usageSummary(db.pool, { groupBy: 'user', since: new Date(start), until: new Date(start + 3 * 86_400_000), limit: 2 });
    assert.deepEqual(top.map((row) => [row.key, row.chargedNano, row.requests]), [['steady', 1200n, 3], ['spike-0-0', 1000n, 1]]);
  });
});
