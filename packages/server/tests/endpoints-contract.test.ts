// Every OpenRouter endpoint metered (issue 12): the HTTP contract around the metering core —
// GET /v1/key, reserve-mode holds from each endpoint's own fields, Idempotency-Key, token
// details recorded, Anthropic-shaped errors on /messages, and no unknown route forwarded.
import { nanoToUsdNumber } from '@metergate/db';
import { startStack, type TestStack } from '@metergate/testkit';
import { assertBooks, generationsOf, readSse, requestIdOf } from './helpers.js';

type Body = Record<string, unknown>;

function post(stack: TestStack, key: string, path: string, body: Body, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${stack.url}${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body),
  });
}

const RESPONSES: Body = { model: 'openai/gpt-4o', input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hello' }] }] };
const MESSAGES: Body = { model: 'anthropic/claude-sonnet-4', max_tokens: 100, messages: [{ role: 'user', content: 'hello' }] };
const EMBEDDINGS: Body = { model: 'openai/text-embedding-3-small', input: ['a text to embed', 'another'] };

async function requestRow(stack: TestStack, id: string): Promise<{ endpoint: string; hold_completion_tokens: number | null; state: string }> {
  const { rows } = await stack.db.pool.query<{ endpoint: string; hold_completion_tokens: number | null; state: string }>(
    'select endpoint, hold_completion_tokens, state from requests where id = $1::uuid', [id]);
  return rows[0]!;
}

QUnit.module('every endpoint: contract (serialize)', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('GET /v1/key: OpenRouter shape, usage from the rollups', async (assert) => {
    const user = 'key-info';
    const key = await stack.createUser(user, '2.00');
    for (const [path, body] of [['/v1/responses', RESPONSES], ['/v1/messages', MESSAGES], ['/v1/embeddings', EMBEDDINGS]] as const) {
      const response = await post(stack, key, path, body);
      assert.strictEqual(response.status, 200, path);
      await response.text();
    }
    const billed = await assertBooks(assert, stack, user);
    for (const path of ['/v1/key', '/api/v1/key']) {
      const answer = await fetch(`${stack.url}${path}`, { headers: { authorization: `Bearer ${key}` } });
      assert.strictEqual(answer.status, 200);
      const { data } = await answer.json() as { data: Record<string, unknown> };
      assert.strictEqual(data['limit'], 2);
      assert.strictEqual(data['usage'], nanoToUsdNumber(billed), 'usage = what was billed (multiplier 1)');
      assert.strictEqual(data['usage_daily'], nanoToUsdNumber(billed));
      assert.strictEqual(data['usage_weekly'], nanoToUsdNumber(billed));
      assert.strictEqual(data['usage_monthly'], nanoToUsdNumber(billed));
      assert.strictEqual(data['limit_remaining'], nanoToUsdNumber(2_000_000_000n - billed));
      assert.strictEqual(data['limit_reset'], null);
      assert.true(typeof data['label'] === 'string' && data['label'] !== key && !String(data['label']).includes(key), 'label never the key');
    }
    const anonymous = await fetch(`${stack.url}/v1/key`);
    assert.strictEqual(anonymous.status, 401);
  });

  QUnit.test('GET /v1/key with spend limits: the limit with the least left, its reset, and what remains', async (assert) => {
    const user = 'key-limits';
    const key = await stack.createUser(user, '2.00');
    const keyInfo = async () => (await (await fetch(`${stack.url}/v1/key`, { headers: { authorization: `Bearer ${key}` } })).json() as { data: Record<string, unknown> }).data;
    const keyId = String((await keyInfo())['label']);
    const put = await stack.admin('PUT', `/admin/users/${user}/limits`, { spend: [{ amount_usd: '1.00', period: 'month' }] });
    assert.strictEqual(put.status, 200, await put.clone().text());
    let data = await keyInfo();
    assert.deepEqual([data['limit'], data['limit_remaining'], data['limit_reset']], [1, 1, 'monthly'], "the user's monthly limit binds");
    assert.true(typeof data['limit_resets_at'] === 'string' && Date.parse(String(data['limit_resets_at'])) > Date.now(), 'resets in the future');
    const keyPut = await stack.admin('PUT', `/admin/keys/${keyId}/limits`, { spend: [{ amount_usd: '0.50', period: 'day' }] });
    assert.strictEqual(keyPut.status, 200, await keyPut.clone().text());
    const response = await post(stack, key, '/v1/responses', RESPONSES);
    assert.strictEqual(response.status, 200);
    await response.text();
    const billed = await assertBooks(assert, stack, user);
    data = await keyInfo();
    assert.deepEqual([data['limit'], data['limit_reset']], [0.5, 'daily'], "the key's daily limit has less left");
    assert.strictEqual(data['limit_remaining'], nanoToUsdNumber(500_000_000n - billed), 'remaining = limit − spent today');
    assert.strictEqual(data['usage_daily'], nanoToUsdNumber(billed));
    await stack.admin('PUT', `/admin/keys/${keyId}/limits`, { spend: null });
    await stack.admin('PUT', `/admin/users/${user}/limits`, { spend: null });
    data = await keyInfo();
    assert.deepEqual([data['limit'], data['limit_reset'], data['limit_resets_at']], [2, null, null], 'no spend limit: the credits, no reset');
  });

  QUnit.test('token details and the endpoint are recorded per call', async (assert) => {
    const user = 'token-details';
    const key = await stack.createUser(user);
    await (await post(stack, key, '/v1/responses', RESPONSES)).text();
    await (await post(stack, key, '/v1/messages', MESSAGES)).text();
    await (await post(stack, key, '/v1/chat/completions', { model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'hi' }] })).text();
    await assertBooks(assert, stack, user);
    const { rows } = await stack.db.pool.query<{ endpoint: string; prompt_tokens: number; cached_tokens: number | null; cache_write_tokens: number | null; reasoning_tokens: number | null }>(
      `select endpoint, prompt_tokens, cached_tokens, cache_write_tokens, reasoning_tokens from ledger_entries
        where user_id = $1::text and kind = 'usage' order by id`, [user]);
    const sims = generationsOf(stack, user);
    assert.deepEqual(rows.map((r) => [r.endpoint, r.prompt_tokens, r.cached_tokens, r.cache_write_tokens, r.reasoning_tokens]), [
      ['responses', sims[0]!.promptTokens, 0, null, 0],
      ['messages', sims[1]!.promptTokens, 0, 0, null],
      ['chat', sims[2]!.promptTokens, 0, null, 0],
    ]);
  });

  QUnit.test('usage grouped by endpoint, and the endpoint in the ledger CSV', async (assert) => {
    const user = 'group-endpoint';
    const key = await stack.createUser(user);
    for (const [path, body] of [['/v1/responses', RESPONSES], ['/v1/responses', { ...RESPONSES, stream: true }], ['/api/v1/embeddings', EMBEDDINGS]] as const) {
      await (await post(stack, key, path, body)).text();
    }
    await assertBooks(assert, stack, user);
    const { rows } = await stack.db.pool.query<{ endpoint: string; charged: string; n: number }>(
      `select endpoint, sum(-amount_nano)::text as charged, count(*)::int as n from ledger_entries
        where user_id = $1::text and kind = 'usage' group by endpoint order by endpoint`, [user]);
    const answer = await stack.admin('GET', `/admin/usage?group_by=endpoint&user_id=${user}`);
    assert.strictEqual(answer.status, 200);
    const { data } = await answer.json() as { data: Array<{ key: string; requests: number; charged_usd: string }> };
    assert.deepEqual(data.map((row) => [row.key, row.requests]).sort(), rows.map((row) => [row.endpoint, row.n]));
    assert.deepEqual(rows.map((row) => row.endpoint), ['embeddings', 'responses']);
    const csv = await (await stack.admin('GET', `/admin/ledger?user_id=${user}&format=csv`)).text();
    const [header, ...lines] = csv.trim().split('\r\n');
    const column = header!.split(',').indexOf('endpoint');
    assert.true(column > 0, 'endpoint column');
    const usage = lines.map((line) => line.split(',')).filter((fields) => fields[2] === 'usage');
    assert.deepEqual(usage.map((fields) => fields[column]).sort(), ['embeddings', 'responses', 'responses']);
  });

  QUnit.test('Idempotency-Key on /v1/responses and /v1/messages: a retry replays, nothing runs or is charged twice', async (assert) => {
    const user = 'idem-endpoints';
    const key = await stack.createUser(user);
    for (const [path, body] of [['/v1/responses', RESPONSES], ['/v1/messages', { ...MESSAGES, stream: true }]] as const) {
      const headers = { 'idempotency-key': `k-${path}` };
      const first = await post(stack, key, path, body, headers);
      const firstText = await first.text();
      const again = await post(stack, key, path, body, headers);
      assert.strictEqual(again.headers.get('idempotent-replayed'), 'true', path);
      assert.strictEqual(await again.text(), firstText, 'the same bytes');
    }
    // The same key and body on another endpoint is another request, not a replay.
    const other = await post(stack, key, '/api/v1/responses', RESPONSES, { 'idempotency-key': 'k-/v1/messages' });
    assert.strictEqual(other.status, 422, 'a key reused with another request is refused');
    await other.text();
    assert.strictEqual(generationsOf(stack, user).length, 2, 'two generations in all');
    await assertBooks(assert, stack, user);
  });

  QUnit.test('/v1/messages answers in Anthropic\'s error shape; other routes in OpenAI\'s', async (assert) => {
    const key = await stack.createUser('anthropic-errors');
    const missing = await post(stack, key, '/v1/messages', { model: 'anthropic/claude-sonnet-4', max_tokens: 10 });
    assert.strictEqual(missing.status, 400);
    const body = await missing.json() as { type: string; error: { type: string; message: string } };
    assert.strictEqual(body.type, 'error');
    assert.strictEqual(body.error.type, 'invalid_request_error');
    const noKey = await fetch(`${stack.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(MESSAGES) });
    assert.strictEqual(noKey.status, 401);
    assert.strictEqual((await noKey.json() as { error: { type: string } }).error.type, 'authentication_error');
    const viaHeader = await fetch(`${stack.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json' }, body: JSON.stringify(MESSAGES) });
    assert.strictEqual(viaHeader.status, 200, 'x-api-key accepted on /messages');
    await viaHeader.text();
    const notElsewhere = await fetch(`${stack.url}/v1/responses`, { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json' }, body: JSON.stringify(RESPONSES) });
    assert.strictEqual(notElsewhere.status, 401, 'x-api-key only where Anthropic clients send it');
    assert.strictEqual((await notElsewhere.json() as { error: { code: string } }).error.code, 'invalid_api_key');
    const stream = await post(stack, key, '/v1/embeddings', { ...EMBEDDINGS, stream: true });
    assert.strictEqual(stream.status, 400, 'embeddings never stream');
    await stream.text();
  });

  QUnit.test('no unknown route reaches the upstream', async (assert) => {
    const key = await stack.createUser('unknown-routes');
    const before = stack.sim.requestLog.length;
    for (const path of ['/v1/audio/speech', '/v1/images/generations', '/api/v1/rerank', '/v1/responses/resp_1', '/v1/messages/count_tokens']) {
      const response = await post(stack, key, path, { model: 'openai/gpt-4o', input: 'x' });
      assert.strictEqual(response.status, 404, path);
      await response.text();
    }
    assert.strictEqual(stack.sim.requestLog.length, before, 'nothing forwarded');
  });
});

QUnit.module('every endpoint: holds from each endpoint\'s fields (reserve)', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack({ env: { BARRIER: 'reserve' } }); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('max_output_tokens, max_tokens and input-only embeddings bound the hold; none set: the limit is sent', async (assert) => {
    const user = 'reserve-endpoints';
    const key = await stack.createUser(user, '5.00');
    const limited = await post(stack, key, '/v1/responses', { ...RESPONSES, max_output_tokens: 40 });
    await limited.text();
    assert.strictEqual((await requestRow(stack, requestIdOf(limited))).hold_completion_tokens, 40, 'max_output_tokens is the budget');
    const open = await post(stack, key, '/v1/responses', { ...RESPONSES, stream: true, sim: { completion_tokens: 30 } });
    await readSse(open);
    const openRow = await requestRow(stack, requestIdOf(open));
    assert.true((openRow.hold_completion_tokens ?? 0) > 0, `a budget was chosen: ${openRow.hold_completion_tokens}`);
    const message = await post(stack, key, '/v1/messages', { ...MESSAGES, max_tokens: 77 });
    await message.text();
    assert.strictEqual((await requestRow(stack, requestIdOf(message))).hold_completion_tokens, 77, 'Anthropic max_tokens is the budget');
    const embedded = await post(stack, key, '/v1/embeddings', EMBEDDINGS);
    await embedded.text();
    const row = await requestRow(stack, requestIdOf(embedded));
    assert.deepEqual([row.endpoint, row.hold_completion_tokens], ['embeddings', 0], 'input only');
    await assertBooks(assert, stack, user);

    const poor = await stack.createUser('reserve-poor', '0.001');
    const tooBig = await post(stack, poor, '/v1/messages', { ...MESSAGES, max_tokens: 60_000 });
    assert.strictEqual(tooBig.status, 402);
    const refusal = await tooBig.json() as { type: string; error: { type: string } };
    assert.deepEqual([refusal.type, refusal.error.type], ['error', 'billing_error'], "Anthropic's shape for insufficient credits");
    assert.strictEqual(generationsOf(stack, 'reserve-poor').length, 0, 'nothing sent upstream');
  });
});
