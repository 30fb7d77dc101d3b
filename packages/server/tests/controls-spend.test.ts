// Spend limits (issue 13) on two replicas sharing only Postgres, with an injected clock: the
// total charged in a day never exceeds the limit by more than the barrier mode's bound, and
// the limit resets at midnight UTC.
import { startStack, type TestStack } from '@metergate/testkit';
import type { Runtime } from '@metergate/server';
import { ledger, verify } from '@metergate/db';
import { assertBooks, assertOpenAiError, messages, userHeaders, HTTP_TIMEOUT_MS, type Body } from './helpers.js';

async function charged(stack: TestStack, user: string): Promise<bigint> {
  const { rows } = await stack.db.pool.query<{ usage: string }>(
    `select coalesce(-sum(amount_nano), 0)::text as usage from ledger_entries where user_id = $1::text and kind = 'usage'`, [user]);
  return BigInt(rows[0]!.usage);
}

async function maxCharge(stack: TestStack, user: string): Promise<bigint> {
  const { rows } = await stack.db.pool.query<{ m: string }>(
    `select coalesce(max(-amount_nano), 0)::text as m from ledger_entries where user_id = $1::text and kind = 'usage'`, [user]);
  return BigInt(rows[0]!.m);
}

function post(url: string, key: string, body: Body): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: userHeaders(key), body: JSON.stringify(body), signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
}

async function burst(urls: string[], key: string, body: Body, count: number): Promise<Array<{ status: number; body: string }>> {
  return Promise.all(Array.from({ length: count }, async (_, i) => {
    const response = await post(urls[i % urls.length]!, key, body);
    return { status: response.status, body: await response.text() };
  }));
}

const BODY: Body = { model: 'openai/gpt-4o-mini', max_tokens: 50, messages: messages(), sim: { completion_tokens: 40 } };
const LIMIT_USD = '0.000200000';
const LIMIT_NANO = 200_000n;

for (const mode of ['reserve', 'serialize'] as const) {
  QUnit.module(`spend limits (${mode}, two replicas, injected clock)`, (hooks) => {
    let stack: TestStack;
    let second: Runtime;
    let now = new Date('2026-03-10T23:59:00.000Z');
    hooks.before(async () => {
      stack = await startStack({ env: { BARRIER: mode, BARRIER_QUEUE_DEPTH_MAX: '256' }, clock: () => now });
      second = await stack.addReplica!();
    });
    hooks.after(async () => { await stack.close(); });

    QUnit.test('a daily limit holds across replicas under 40 concurrent calls, is reported, and resets at midnight UTC', async (assert) => {
      const user = `daily-${mode}`;
      const key = await stack.createUser(user, '10.00');
      const put = await stack.admin('PUT', `/admin/users/${user}/limits`, { spend: [{ amount_usd: '0.0002', period: 'day' }] });
      assert.strictEqual(put.status, 200, await put.clone().text());
      const results = await burst([stack.url, second.url], key, BODY, 40);
      const ok = results.filter((r) => r.status === 200).length;
      const refused = results.filter((r) => r.status === 402);
      assert.strictEqual(ok + refused.length, 40, `only 200 and 402: ${JSON.stringify(results.filter((r) => r.status !== 200 && r.status !== 402).slice(0, 2))}`);
      assert.true(ok > 0 && refused.length > 0, `some served (${ok}), some refused (${refused.length})`);
      const error = JSON.parse(refused[0]!.body) as { error: { code: string; message: string; param: string } };
      assert.strictEqual(error.error.code, 'spend_limit_reached');
      assert.true(error.error.message.includes('daily limit of 0.000200000 USD') && error.error.message.includes('2026-03-11T00:00:00.000Z'),
        `names the limit and its reset: ${error.error.message}`);
      await assertBooks(assert, stack, user);
      const total = await charged(stack, user);
      // reserve: no overdraft at all; serialize: at most one request beyond the limit.
      const bound = mode === 'reserve' ? LIMIT_NANO : LIMIT_NANO + await maxCharge(stack, user);
      assert.true(total <= bound, `charged ${total} ≤ ${bound} (limit ${LIMIT_NANO}, ${mode})`);
      const limits = await (await stack.admin('GET', `/admin/users/${user}/limits`)).json() as { spend: Array<Record<string, string>> };
      assert.deepEqual(limits.spend.map((s) => [s.period, s.amount_usd, s.spent_usd, s.held_usd, s.resets_at]),
        [['day', LIMIT_USD, formatUsd(total), '0.000000000', '2026-03-11T00:00:00.000Z']], 'GET shows the spend of the day, from the settle statement');

      now = new Date('2026-03-11T00:00:01.000Z');
      // Two calls: their worst cases (about 52,000 nano-USD each) fit the fresh day together.
      const after = await burst([stack.url, second.url], key, BODY, 2);
      assert.deepEqual(after.map((r) => r.status), [200, 200], 'a new UTC day: the limit has room again');
      const fresh = await (await stack.admin('GET', `/admin/users/${user}/limits`)).json() as { spend: Array<Record<string, string>> };
      assert.strictEqual(fresh.spend[0]!.spent_usd, formatUsd(await charged(stack, user) - total), 'the counter restarted at midnight');
      assert.strictEqual(fresh.spend[0]!.resets_at, '2026-03-12T00:00:00.000Z');
    });

    QUnit.test('a key limit applies to that key only; the user\'s other key is not limited by it', async (assert) => {
      const user = `keylimit-${mode}`;
      const key = await stack.createUser(user, '10.00');
      const made = await (await stack.admin('POST', `/admin/users/${user}/keys`)).json() as { api_key: string; key_id?: string; id?: string };
      const keyId = made.key_id ?? made.id!;
      const other = key;
      const limited = made.api_key;
      assert.strictEqual((await stack.admin('PUT', `/admin/keys/${keyId}/limits`, { spend: [{ amount_usd: '0.00005', period: 'month' }] })).status, 200);
      const results = await burst([stack.url, second.url], limited, BODY, 12);
      const refused = results.filter((r) => r.status === 402);
      assert.true(refused.length > 0, 'the key is refused once its monthly limit is used');
      assert.true(refused.every((r) => (JSON.parse(r.body) as { error: { message: string; code: string } }).error.message.includes("API key's monthly limit")), 'names the key limit');
      const others = await burst([stack.url], other, BODY, 3);
      assert.deepEqual(others.map((r) => r.status), [200, 200, 200], 'the other key still works');
      const state = await (await stack.admin('GET', `/admin/keys/${keyId}/limits`)).json() as { spend: Array<Record<string, string>>; open_calls: number; held_usd: string };
      assert.strictEqual(state.open_calls, 0);
      assert.strictEqual(state.held_usd, '0.000000000', 'the key\'s holds were all released');
      const spent = BigInt(state.spend[0]!.spent_usd!.replace('.', ''));
      const bound = mode === 'reserve' ? 50_000n : 50_000n + await maxCharge(stack, user);
      assert.true(spent <= bound, `key spent ${spent} ≤ ${bound}`);
      await assertBooks(assert, stack, user);
    });

    QUnit.test('verify: balances, holds, open-call counters and key holds all match the requests', async (assert) => {
      const report = await verify.verifyBooks(stack.db.pool, { staleInFlightMs: 60_000, sampleMax: 5 });
      assert.strictEqual(report.breaches.controls.count, 0, JSON.stringify(report.breaches.controls.sample));
      assert.true(report.ok, JSON.stringify(report.breaches));
    });
  });
}

QUnit.module('spend limits: admin API', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('PUT validates, null clears, GET reports; unknown user or key is 404', async (assert) => {
    await stack.createUser('admin-limits', '1.00');
    await assertOpenAiError(assert, await stack.admin('PUT', '/admin/users/admin-limits/limits', { spend: [{ amount_usd: 1, period: 'day' }] }), 400, 'invalid_request');
    await assertOpenAiError(assert, await stack.admin('PUT', '/admin/users/admin-limits/limits', { spend: [{ amount_usd: '1', period: 'hour' }] }), 400, 'invalid_request');
    await assertOpenAiError(assert, await stack.admin('PUT', '/admin/users/admin-limits/limits', { models: { allow: ['open*ai'] } }), 400, 'invalid_request');
    await assertOpenAiError(assert, await stack.admin('PUT', '/admin/users/nobody/limits', { requests_per_minute: 5 }), 404, 'not_found');
    await assertOpenAiError(assert, await stack.admin('GET', '/admin/keys/nokey/limits'), 404, 'not_found');
    const put = await stack.admin('PUT', '/admin/users/admin-limits/limits', {
      spend: [{ amount_usd: '1.00', period: 'week' }, { amount_usd: '5', period: 'never' }], requests_per_minute: 60, concurrent_calls: 4,
      models: { allow: ['openai/*'], deny: [] },
    });
    const body = await put.json() as Record<string, unknown>;
    assert.strictEqual(put.status, 200);
    assert.deepEqual([body.requests_per_minute, body.concurrent_calls, body.models], [60, 4, { allow: ['openai/*'], deny: [] }]);
    assert.deepEqual((body.spend as Array<Record<string, unknown>>).map((s) => [s.period, s.amount_usd, s.resets_at === null]), [['week', '1.000000000', false], ['never', '5.000000000', true]]);
    const cleared = await (await stack.admin('PUT', '/admin/users/admin-limits/limits', { spend: null, requests_per_minute: null, models: null })).json() as Record<string, unknown>;
    assert.deepEqual([cleared.spend, cleared.requests_per_minute, cleared.concurrent_calls, cleared.models], [[], null, 4, { allow: null, deny: null }], 'null clears; absent keeps');
  });
});

function formatUsd(nano: bigint): string {
  return `${nano / 1_000_000_000n}.${(nano % 1_000_000_000n).toString().padStart(9, '0')}`;
}

QUnit.module('controls: rolling upgrade across 0010', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('a call admitted by a pre-0010 replica (not counted as open) still settles; the count stays at 0', async (assert) => {
    await stack.createUser('upgrade-user', '1.00');
    const id = '00000000-0000-4000-8000-000000000011';
    // What a pre-0010 replica's admission wrote: the request and its hold, no open-call count, no key.
    await stack.db.pool.query(
      `with held as (update users set held_nano = held_nano + 1000 where id = 'upgrade-user')
       insert into requests (id, user_id, replica_id, model, stream, state, hold_nano) values ($1::uuid, 'upgrade-user', 'old', 'm/x', false, 'in_flight', 1000)`, [id]);
    const settled = await ledger.settleUsage(stack.db.pool, { requestId: id, upstreamCostNano: 500n, generationId: null, promptTokens: null, completionTokens: null });
    assert.notStrictEqual(settled, null, 'settled, not rejected by the open_calls check');
    const { rows } = await stack.db.pool.query<{ open_calls: number; held: string }>(`select open_calls, held_nano::text as held from users where id = 'upgrade-user'`);
    assert.deepEqual([rows[0]!.open_calls, rows[0]!.held], [0, '0']);
  });
});

QUnit.module('spend limits: reserve budget without max_tokens', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack({ env: { BARRIER: 'reserve' } }); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('the max_tokens sent fits the limit\'s room, not just the balance; no room left is spend_limit_reached', async (assert) => {
    const user = 'budget-limit';
    const key = await stack.createUser(user, '10.00');
    assert.strictEqual((await stack.admin('PUT', `/admin/users/${user}/limits`, { spend: [{ amount_usd: '0.001', period: 'day' }] })).status, 200);
    const body: Body = { model: 'openai/gpt-4o-mini', messages: messages(), sim: { completion_tokens: 10 } };
    const first = await post(stack.url, key, body);
    assert.strictEqual(first.status, 200, 'admitted with a budget the limit can hold');
    await first.text();
    // The budget the hold was computed with is the max_tokens sent upstream (holds-reserve tests that equality).
    const { rows } = await stack.db.pool.query<{ t: number }>('select hold_completion_tokens as t from requests where user_id = $1::text', [user]);
    const maxTokens = rows[0]?.t;
    // gpt-4o-mini output costs 600 nano-USD a token: $0.001 of room holds well under 1,667 tokens (its 16,384 limit would not fit).
    assert.true(maxTokens !== undefined && maxTokens < 1_667 && maxTokens >= 16, `max_tokens ${maxTokens} fits the limit`);
    await assertBooks(assert, stack, user);
    const reachedCount = async () => (await stack.db.pool.query<{ n: number }>(
      `select count(*)::integer as n from webhook_events where type = 'limit.reached' and data->>'user_id' = $1::text`, [user])).rows[0]!.n;
    assert.strictEqual(await reachedCount(), 0, 'the full-budget try the limit refused, before the smaller budget, is not limit.reached');
    // Use up the room: a grant does not help; the limit does.
    await stack.db.pool.query(`update spend_limits set spent_nano = amount_nano where scope_id = $1::text`, [user]);
    const refused = await post(stack.url, key, body);
    await assertOpenAiError(assert, refused, 402, 'spend_limit_reached');
    assert.strictEqual(await reachedCount(), 1, 'the refusal that ends a call is');
  });
});
