import { reports, type LedgerFilters } from '@metergate/db';
import { createTestDatabase, type TestDatabase } from '@metergate/testkit';
import { ensureUser, insertTimed, pick, prng, settleNew, type TimedEntry } from './reports-fixtures.js';

QUnit.module('reports: ledger queries (real Postgres)', (hooks) => {
  let db: TestDatabase;
  const random = prng(7);
  const userIds = ['la', 'lb', 'lc'];
  const base = Date.UTC(2025, 4, 1);
  hooks.before(async () => {
    db = await createTestDatabase();
    for (const id of userIds) await ensureUser(db.pool, id);
    const entries: TimedEntry[] = [];
    for (let i = 0; i < 120; i += 1) {
      // Many entries share a created_at (whole minutes, some identical): the id must break ties.
      const at = new Date(base + Math.floor(random() * 40) * 60_000);
      const userId = pick(random, userIds);
      const r = random();
      if (r < 0.15) entries.push({ userId, kind: 'grant', amountNano: 1_000n + BigInt(i), note: `grant ${i}`, at });
      else if (r < 0.25) entries.push({ userId, kind: 'adjustment', amountNano: BigInt(i) - 60n || 1n, note: `adj, "${i}"`, at });
      else entries.push({ userId, kind: 'usage', amountNano: -BigInt(i * 7), model: pick(random, ['m/a', 'm/b', null]), promptTokens: i, completionTokens: i, at });
    }
    // Out of time order on purpose: a later id may carry an earlier time (a long transaction).
    await insertTimed(db.pool, entries);
    await settleNew(db.pool, 'la', 'm/a', 5n); // and one written by the real settle statement, at now()
  });
  hooks.after(async () => { await db.drop(); });

  async function expectedIds(filters: LedgerFilters): Promise<string[]> {
    const result = await db.pool.query<{ id: string }>(
      `select l.id::text as id from ledger_entries l
        where ($1::text is null or user_id = $1::text) and ($2::text is null or kind = $2::text)
          and ($3::text is null or model = $3::text)
          and ($4::timestamptz is null or created_at >= $4::timestamptz) and ($5::timestamptz is null or created_at < $5::timestamptz)
        order by l.created_at desc, l.id desc`,
      [filters.userId ?? null, filters.kind ?? null, filters.model ?? null, filters.since ?? null, filters.until ?? null],
    );
    return result.rows.map((row) => row.id);
  }

  const FILTERS: LedgerFilters[] = [
    {},
    { userId: 'la' },
    { kind: 'usage' },
    { kind: 'grant', userId: 'lb' },
    { model: 'm/b' },
    { since: new Date(base + 10 * 60_000) },
    { until: new Date(base + 25 * 60_000) },
    { since: new Date(base + 5 * 60_000), until: new Date(base + 30 * 60_000), userId: 'lc', kind: 'usage', model: 'm/a' },
    { userId: 'nobody' },
  ];

  QUnit.test('keyset pages cover every matching entry exactly once, newest first, for every filter', async (assert) => {
    for (const filters of FILTERS) {
      const expected = await expectedIds(filters);
      for (const limit of [1, 7, 500]) {
        const seen: string[] = [];
        let beforeId: string | null = null;
        for (let pages = 0; pages < 500; pages += 1) {
          const page = await reports.queryLedger(db.pool, { ...filters, beforeId, limit });
          seen.push(...page.map((entry) => entry.id));
          if (page.length < limit) break;
          beforeId = page.at(-1)!.id;
        }
        assert.deepEqual(seen, expected, `${JSON.stringify(filters)} limit ${limit}: ${expected.length} entries`);
      }
      assert.strictEqual(await reports.countLedger(db.pool, filters), expected.length, `count ${JSON.stringify(filters)}`);
    }
  });

  QUnit.test('entries come back whole; a filter never leaks another user, kind or model', async (assert) => {
    const page = await reports.queryLedger(db.pool, { userId: 'lb', kind: 'usage', model: 'm/a', limit: 1000 });
    assert.true(page.length > 0);
    assert.true(page.every((e) => e.userId === 'lb' && e.kind === 'usage' && e.model === 'm/a'));
    const settled = (await reports.queryLedger(db.pool, { limit: 1 }))[0]!;
    assert.strictEqual(settled.kind, 'usage', 'the newest entry is the settle at now()');
    assert.deepEqual([settled.upstreamCostNano, settled.amountNano, settled.multiplierPpm], [5n, -5n, 1_000_000n]);
  });

  QUnit.test('streamLedger yields the same entries as the pages, in batches, and the client is reusable after', async (assert) => {
    const client = await db.pool.connect();
    try {
      for (const filters of FILTERS) {
        const streamed: string[] = [];
        for await (const entry of reports.streamLedger(client, filters, 4)) streamed.push(entry.id);
        assert.deepEqual(streamed, await expectedIds(filters), `stream ${JSON.stringify(filters)}`);
      }
      // Breaking out early closes the cursor and ends the transaction.
      let taken = 0;
      for await (const _entry of reports.streamLedger(client, {}, 3)) {
        taken += 1;
        if (taken === 5) break;
      }
      assert.strictEqual(taken, 5);
      const state = await client.query<{ s: string }>('select pg_current_xact_id_if_assigned() is null and now() = statement_timestamp() as s');
      assert.strictEqual(String(state.rows[0]!.s), 'true', 'no transaction is left open on the client');
    } finally {
      client.release();
    }
  });

  QUnit.test('a slow export outlives the session statement_timeout (the pool\'s limit is for queries, not exports)', async (assert) => {
    const client = await db.pool.connect();
    try {
      await client.query(`set statement_timeout = '150ms'`);
      let rows = 0;
      for await (const _entry of reports.streamLedger(client, {}, 10)) {
        rows += 1;
        if (rows % 10 === 0) await new Promise((resolve) => setTimeout(resolve, 40));
      }
      assert.strictEqual(rows, (await expectedIds({})).length, 'every row, after ~500 ms of a 150 ms statement_timeout');
      const after = await client.query<{ statement_timeout: string }>('show statement_timeout');
      assert.strictEqual(after.rows[0]!.statement_timeout, '150ms', 'the session setting is back once the export ends');
    } finally {
      client.release(true);
    }
  });
});
