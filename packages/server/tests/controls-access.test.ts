// Model allow/deny lists and rate limits (issue 13): refused models cost nothing and never
// reach upstream; requests per minute and concurrent calls are counted in the admission
// statement, so two replicas sharing only Postgres admit no more than the limit.
import { startStack, type TestStack } from '@metergate/testkit';
import type { Runtime } from '@metergate/server';
import { assertBooks, assertOpenAiError, chat, messages, readSse, userHeaders, HTTP_TIMEOUT_MS, type Body } from './helpers.js';

function post(url: string, key: string, body: Body): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: userHeaders(key), body: JSON.stringify(body), signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
}

async function balanceOf(stack: TestStack, user: string): Promise<string> {
  const { rows } = await stack.db.pool.query<{ b: string }>('select balance_nano::text as b from users where id = $1::text', [user]);
  return rows[0]!.b;
}

const BODY: Body = { model: 'openai/gpt-4o-mini', max_tokens: 20, messages: messages(), sim: { completion_tokens: 5 } };

QUnit.module('controls: model allow/deny lists', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('a refused model is a 403 before admission: nothing sent upstream, nothing held or charged; vendor/* works', async (assert) => {
    const user = 'allow-user';
    const key = await stack.createUser(user, '1.00');
    const put = await stack.admin('PUT', `/admin/users/${user}/limits`, { models: { allow: ['openai/*', 'perplexity/sonar'], deny: ['openai/gpt-4o'] } });
    assert.strictEqual(put.status, 200);
    const upstreamBefore = stack.sim.requestLog.length;
    const balance = await balanceOf(stack, user);
    const refused = await assertOpenAiError(assert, await chat(stack, key, { ...BODY, model: 'anthropic/claude-sonnet-4' }), 403, 'model_not_allowed');
    assert.strictEqual(refused.param, 'model');
    await assertOpenAiError(assert, await chat(stack, key, { ...BODY, model: 'openai/gpt-4o' }), 403, 'model_not_allowed');
    await assertOpenAiError(assert, await chat(stack, key, { ...BODY, model: 'openai/gpt-4o:online' }), 403, 'model_not_allowed');
    await assertOpenAiError(assert, await chat(stack, key, { ...BODY, models: ['openai/gpt-4o-mini', 'meta-llama/llama-3.1-8b-instruct'] }), 403, 'model_not_allowed');
    await assertOpenAiError(assert, await chat(stack, key, { messages: messages() }), 403, 'model_not_allowed');
    assert.strictEqual(stack.sim.requestLog.length, upstreamBefore, 'no refused call reached the upstream');
    assert.strictEqual(await balanceOf(stack, user), balance, 'nothing charged');
    const { rows } = await stack.db.pool.query('select 1 from requests where user_id = $1::text', [user]);
    assert.strictEqual(rows.length, 0, 'nothing admitted');
    assert.strictEqual((await chat(stack, key, BODY)).status, 200, 'openai/* allows openai/gpt-4o-mini');
    assert.strictEqual((await chat(stack, key, { ...BODY, model: 'perplexity/sonar' })).status, 200, 'an exact id');
    await assertBooks(assert, stack, user);
  });

  QUnit.test('key rules narrow the user\'s; /v1/models lists only what the caller may use', async (assert) => {
    const user = 'models-user';
    const key = await stack.createUser(user, '1.00');
    const { rows } = await stack.db.pool.query<{ id: string }>('select id from api_keys where user_id = $1::text', [user]);
    assert.strictEqual((await stack.admin('PUT', `/admin/keys/${rows[0]!.id}/limits`, { models: { deny: ['openai/gpt-4o'] } })).status, 200);
    assert.strictEqual((await stack.admin('PUT', `/admin/users/${user}/limits`, { models: { allow: ['openai/*'] } })).status, 200);
    const listed = await fetch(`${stack.url}/v1/models`, { headers: userHeaders(key) });
    const ids = ((await listed.json()) as { data: Array<{ id: string }> }).data.map((m) => m.id).sort();
    assert.deepEqual(ids, ['openai/gpt-4o-mini']);
    await assertOpenAiError(assert, await chat(stack, key, { ...BODY, model: 'openai/gpt-4o' }), 403, 'model_not_allowed');
    const free = await stack.createUser('models-free', '1.00');
    const all = ((await (await fetch(`${stack.url}/v1/models`, { headers: userHeaders(free) })).json()) as { data: unknown[] }).data;
    assert.true(all.length >= 5, 'a caller without rules sees the whole list');
  });
});

for (const mode of ['reserve', 'serialize'] as const) {
QUnit.module(`controls: rate limits across two replicas (${mode}, injected clock)`, (hooks) => {
  let stack: TestStack;
  let second: Runtime;
  let now = new Date('2026-03-10T12:00:10.000Z');
  hooks.before(async () => {
    stack = await startStack({ env: { BARRIER: mode }, clock: () => now });
    second = await stack.addReplica!();
  });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('requests per minute on a key: accepted = the limit per UTC minute over both replicas; 429s carry the headers', async (assert) => {
    const user = `rpm-${mode}`;
    const key = await stack.createUser(user, '5.00');
    const { rows } = await stack.db.pool.query<{ id: string }>('select id from api_keys where user_id = $1::text', [user]);
    assert.strictEqual((await stack.admin('PUT', `/admin/keys/${rows[0]!.id}/limits`, { requests_per_minute: 7 })).status, 200);
    const urls = [stack.url, second.url];
    const first = await Promise.all(Array.from({ length: 20 }, (_, i) => post(urls[i % 2]!, key, BODY)));
    assert.strictEqual(first.filter((r) => r.status === 200).length, 7, 'exactly 7 of 20 in the minute');
    const limited = first.filter((r) => r.status === 429);
    assert.strictEqual(limited.length, 13);
    const headers = limited[0]!.headers;
    assert.deepEqual([headers.get('x-ratelimit-limit'), headers.get('x-ratelimit-remaining'), headers.get('x-ratelimit-reset'), headers.get('retry-after')],
      ['7', '0', String(Date.parse('2026-03-10T12:01:00.000Z') / 1000), '50'], 'limit, remaining, reset (unix s), Retry-After (s)');
    assert.strictEqual(((await limited[0]!.json()) as { error: { code: string } }).error.code, 'rate_limit_exceeded');
    await Promise.all(first.map((r) => (r.bodyUsed ? null : r.text())));
    now = new Date('2026-03-10T12:00:59.000Z');
    assert.strictEqual((await post(stack.url, key, BODY)).status, 429, 'still the same minute');
    now = new Date('2026-03-10T12:01:00.000Z');
    const next = await Promise.all(Array.from({ length: 10 }, (_, i) => post(urls[i % 2]!, key, BODY)));
    assert.strictEqual(next.filter((r) => r.status === 200).length, 7, 'the next minute admits 7 again');
    await Promise.all(next.map((r) => r.text()));
    await assertBooks(assert, stack, user);
  });

  // Serialize mode runs one call per user at a time across replicas (the barrier): only reserve mode can have N open.
  if (mode === 'reserve') QUnit.test('concurrent calls on a user: at most N open at once across replicas; 429 too_many_concurrent_calls', async (assert) => {
    const user = `conc-${mode}`;
    const key = await stack.createUser(user, '5.00');
    assert.strictEqual((await stack.admin('PUT', `/admin/users/${user}/limits`, { concurrent_calls: 3 })).status, 200);
    const slow: Body = { ...BODY, stream: true, sim: { completion_tokens: 10, chunk_delay_ms: 150 } };
    const urls = [stack.url, second.url];
    const responses = await Promise.all(Array.from({ length: 8 }, (_, i) => post(urls[i % 2]!, key, slow)));
    const statuses = responses.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 200, 429, 429, 429, 429, 429]);
    const refused = responses.find((r) => r.status === 429)!;
    assert.strictEqual(refused.headers.get('x-ratelimit-limit'), '3');
    assert.strictEqual(refused.headers.get('retry-after'), '1');
    await Promise.all(responses.map((r) => (r.status === 200 ? readSse(r) : r.text())));
    const state = await (await stack.admin('GET', `/admin/users/${user}/limits`)).json() as { open_calls: number };
    assert.strictEqual(state.open_calls, 0, 'every call closed');
    assert.strictEqual((await post(stack.url, key, BODY)).status, 200, 'room again once they finished');
    await assertBooks(assert, stack, user);
  });
});
}
