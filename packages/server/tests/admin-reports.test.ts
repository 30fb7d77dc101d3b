import { randomUUID } from 'node:crypto';
import { formatNano, reports, requests } from '@metergate/db';
import { startStack, type TestStack } from '@metergate/testkit';
import { adminGet, adminJson, allPages, asCsvText, parseCsv, seedSmallLedger } from './admin-reports-fixtures.js';
import { assertOpenAiError } from './helpers.js';

type Entry = Record<string, string | number | null>;

QUnit.module('admin reporting API', (hooks) => {
  let stack: TestStack;
  const userIds = ['rep-a', 'rep-b', 'rep-c', 'rep-d'];
  hooks.before(async () => {
    stack = await startStack();
    await seedSmallLedger(stack.db.pool, userIds);
  });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('GET /admin/ledger: pages cover every entry once, newest first; CSV of the same filters equals the pages', async (assert) => {
    for (const query of ['', 'user_id=rep-b', 'kind=usage', 'model=m/c', 'kind=adjustment&user_id=rep-a']) {
      const pages = await allPages<Entry>(stack, `/admin/ledger?limit=7${query === '' ? '' : `&${query}`}`);
      const all = await adminJson<{ data: Entry[]; next_cursor: string | null }>(stack, `/admin/ledger?limit=1000${query === '' ? '' : `&${query}`}`);
      assert.strictEqual(all.next_cursor, null, 'one page of 1000 holds everything');
      assert.deepEqual(pages, all.data, `pages of 7 = one page (${query || 'no filter'}, ${all.data.length} entries)`);
      assert.true(all.data.length > 0, 'the filter matches something');
      for (const csvWay of ['format', 'accept'] as const) {
        const response = csvWay === 'format'
          ? await adminGet(stack, `/admin/ledger?format=csv${query === '' ? '' : `&${query}`}`)
          : await adminGet(stack, `/admin/ledger${query === '' ? '' : `?${query}`}`, { accept: 'text/csv' });
        assert.strictEqual(response.status, 200);
        assert.true((response.headers.get('content-type') ?? '').startsWith('text/csv'), 'text/csv');
        const [header, ...rows] = parseCsv(await response.text());
        assert.deepEqual(header, Object.keys(all.data[0]!), 'the CSV columns are the JSON fields, in order');
        assert.deepEqual(rows, all.data.map((entry) => Object.values(entry).map(asCsvText)), `CSV = JSON (${csvWay}, ${query || 'no filter'})`);
      }
    }
  });

  QUnit.test('ledger entries show upstream cost, amount charged and multiplier; time filters are [since, until)', async (assert) => {
    const { data } = await adminJson<{ data: Entry[] }>(stack, '/admin/ledger?kind=usage&limit=1');
    const usage = data[0]!;
    assert.strictEqual(usage.charged_usd, (usage.amount_usd as string).slice(1), 'charged = -amount');
    assert.strictEqual(usage.upstream_cost_usd, usage.charged_usd, 'at ×1 the charge is the upstream cost');
    assert.strictEqual(usage.multiplier, '1.000000');
    const all = await allPages<Entry>(stack, '/admin/ledger?limit=1000');
    const middle = all[Math.floor(all.length / 2)]!.created_at as string;
    const newer = await allPages<Entry>(stack, `/admin/ledger?limit=1000&since=${encodeURIComponent(middle)}`);
    const older = await allPages<Entry>(stack, `/admin/ledger?limit=1000&until=${encodeURIComponent(middle)}`);
    assert.true(newer.every((e) => (e.created_at as string) >= middle) && older.every((e) => (e.created_at as string) < middle));
    assert.strictEqual(newer.length + older.length, all.length, 'since and until split the ledger with nothing lost or doubled');
  });

  QUnit.test('GET /admin/usage: every group_by equals the exact summary, both costs as USD strings', async (assert) => {
    for (const groupBy of ['user', 'model', 'day', 'hour'] as const) {
      const { data } = await adminJson<{ data: Entry[] }>(stack, `/admin/usage?group_by=${groupBy}`);
      const expected = await reports.usageSummary(stack.db.pool, { groupBy, limit: 100 });
      assert.deepEqual(data, expected.map((row) => ({
        key: row.key, requests: row.requests, prompt_tokens: row.promptTokens, completion_tokens: row.completionTokens,
        charged_usd: formatNano(row.chargedNano), upstream_cost_usd: formatNano(row.upstreamCostNano),
        cost_usd: formatNano(row.chargedNano), // charged_usd's old name, until 0.2
      })), groupBy);
      assert.true(data.length > 0, `${groupBy}: rows`);
    }
    const { data: byModel } = await adminJson<{ data: Entry[] }>(stack, '/admin/usage?group_by=model&user_id=rep-a&limit=2');
    assert.true(byModel.length <= 2 && byModel.length > 0, 'limit and user filter');
    const requestsTotal = (await adminJson<{ data: Entry[] }>(stack, '/admin/usage?group_by=model')).data.reduce((n, r) => n + (r.requests as number), 0);
    assert.strictEqual(requestsTotal, 40, 'every settled request counted once');
  });

  QUnit.test('GET /admin/users: sorted by balance or spend, low-balance filter, pages cover each user once', async (assert) => {
    const byBalance = await allPages<Entry>(stack, '/admin/users?sort=balance&order=asc&limit=1');
    const balances = byBalance.map((u) => BigInt((u.balance_usd as string).replace('.', '')));
    assert.true(balances.every((b, i) => i === 0 || balances[i - 1]! <= b), 'ascending balances');
    assert.deepEqual(byBalance.map((u) => u.id).sort(), [...userIds].sort());
    const low = await allPages<Entry>(stack, '/admin/users?sort=balance&order=asc&balance_below_usd=2.5&limit=2');
    assert.deepEqual(low.map((u) => u.id), byBalance.filter((u) => Number(u.balance_usd) < 2.5).map((u) => u.id), 'only balances below 2.5 USD');
    const bySpend = await allPages<Entry>(stack, '/admin/users?sort=spend&order=desc&limit=3');
    const spends = bySpend.map((u) => BigInt((u.spend_usd as string).replace('.', '')));
    assert.true(spends.every((s, i) => i === 0 || spends[i - 1]! >= s), 'descending spend');
    assert.deepEqual(Object.keys(bySpend[0]!), ['id', 'balance_usd', 'held_usd', 'available_usd', 'total_credits_usd', 'total_usage_usd', 'created_at', 'spend_usd', 'multiplier']);
  });

  QUnit.test('GET /admin/requests: unsettled and failed requests for support, newest first, paged', async (assert) => {
    const ids: Record<string, string> = {};
    for (const state of ['in_flight', 'awaiting_cost', 'failed', 'unresolved']) {
      const id = randomUUID();
      ids[state] = id;
      await requests.insertRequest(stack.db.pool, { id, userId: 'rep-c', replicaId: 'gone', model: 'm/x', stream: true });
      if (state === 'awaiting_cost') await requests.markAwaitingCost(stack.db.pool, id, { generationId: 'g', reason: 'no usage', nextLookupAt: new Date(Date.now() + 3_600_000) });
      if (state === 'failed') await requests.markFailed(stack.db.pool, id, 'upstream 500 before output');
      if (state === 'unresolved') await requests.markUnresolved(stack.db.pool, id, 'no generation id');
    }
    const unsettled = await allPages<Entry>(stack, '/admin/requests?state=unsettled&limit=1');
    assert.deepEqual(new Set(unsettled.map((r) => r.id)), new Set([ids.in_flight, ids.awaiting_cost, ids.unresolved]));
    const failed = await allPages<Entry>(stack, '/admin/requests?state=failed&user_id=rep-c');
    assert.deepEqual(failed.map((r) => [r.id, r.state, r.reason]), [[ids.failed, 'failed', 'upstream 500 before output']]);
    const settled = await allPages<Entry>(stack, '/admin/requests?state=settled&limit=6');
    assert.strictEqual(settled.length, 40);
    assert.true(settled.every((r, i) => i === 0 || (settled[i - 1]!.started_at as string) >= (r.started_at as string)), 'newest first');
    assert.true(settled.every((r) => r.upstream_cost_usd !== null && r.cost_usd === r.upstream_cost_usd), 'cost_usd is the old name of upstream_cost_usd');
    assert.deepEqual(Object.keys(settled[0]!), ['id', 'user_id', 'replica_id', 'model', 'state', 'generation_id', 'upstream_cost_usd', 'cost_usd', 'hold_usd', 'reason', 'lookup_attempts', 'started_at', 'settled_at']);
  });

  QUnit.test('every bad query parameter is a 400 in OpenAI shape naming the parameter; no token is a 401', async (assert) => {
    const bad: Array<[string, string]> = [
      ['/admin/ledger?since=yesterday', 'since'],
      ['/admin/ledger?until=2025-13-01T00:00:00Z', 'until'],
      ['/admin/ledger?since=2025-02-01T00:00:00Z&until=2025-01-01T00:00:00Z', 'since'],
      ['/admin/ledger?limit=0', 'limit'],
      ['/admin/ledger?limit=1001', 'limit'],
      ['/admin/ledger?limit=ten', 'limit'],
      ['/admin/ledger?kind=refund', 'kind'],
      ['/admin/ledger?cursor=abc', 'cursor'],
      ['/admin/ledger?user_id=%20bad', 'user_id'],
      ['/admin/ledger?userid=rep-a', 'userid'],
      ['/admin/ledger?user_id=a&user_id=b', 'user_id'],
      ['/admin/ledger?format=xml', 'format'],
      ['/admin/ledger?format=csv&limit=10', 'limit'],
      ['/admin/usage', 'group_by'],
      ['/admin/usage?group_by=week', 'group_by'],
      ['/admin/usage?group_by=day&limit=10001', 'limit'],
      ['/admin/usage?group_by=day&model=', 'model'],
      ['/admin/users?sort=name', 'sort'],
      ['/admin/users?order=up', 'order'],
      ['/admin/users?balance_below_usd=1e3', 'balance_below_usd'],
      ['/admin/users?cursor=not-a-cursor', 'cursor'],
      ['/admin/requests?state=done', 'state'],
      ['/admin/requests?cursor=123', 'cursor'],
    ];
    for (const [path, param] of bad) {
      const error = await assertOpenAiError(assert, await adminGet(stack, path), 400, 'invalid_request');
      assert.strictEqual(error.param, param, `${path} names ${param}: ${String(error.message)}`);
    }
    const noToken = await fetch(`${stack.url}/admin/usage?group_by=user`, { signal: AbortSignal.timeout(10_000) });
    await assertOpenAiError(assert, noToken, 401, 'invalid_api_key');
  });
});
