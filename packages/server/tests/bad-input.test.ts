// Every bad input gets OpenAI's error shape with the right status and code, and nothing that
// is refused reaches the upstream or the ledger.
import { ledgerUsageNano, startStack, type TestStack } from '@metergate/testkit';
import {
  assertBooks, assertNano, assertOpenAiError, chat, closedPort, contentEvents, generationsOf, messages, readSse, requestIdOf, requestRow,
  settledState,
} from './helpers.js';

function chatCalls(stack: TestStack): number {
  return stack.sim.requestLog.filter((entry) => entry.path.endsWith('/chat/completions')).length;
}

QUnit.module('bad input', (hooks) => {
  let stack: TestStack;
  let key: string;
  hooks.before(async () => {
    stack = await startStack();
    key = await stack.createUser('bad-input');
  });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('400: malformed JSON, whatever the content type', async (assert) => {
    const before = chatCalls(stack);
    for (const body of ['{"messages": [', 'not json at all', '{"a":1,}']) {
      const error = await assertOpenAiError(assert, await chat(stack, key, body), 400, 'invalid_json');
      assert.strictEqual(error.type, 'invalid_request_error');
    }
    const plain = await chat(stack, key, '{"messages":', { headers: { authorization: `Bearer ${key}`, 'content-type': 'text/plain' } });
    await assertOpenAiError(assert, plain, 400, 'invalid_json');
    assert.strictEqual(chatCalls(stack), before, 'nothing reached the upstream');
  });

  QUnit.test('400: missing or empty messages', async (assert) => {
    const before = chatCalls(stack);
    for (const body of [{ model: 'openai/gpt-4o' }, { messages: [] }, { messages: 'hi' }, { messages: null }, { messages: {} }]) {
      const error = await assertOpenAiError(assert, await chat(stack, key, body), 400, 'invalid_request');
      assert.strictEqual(error.param, 'messages', `param names the field for ${JSON.stringify(body)}`);
    }
    assert.strictEqual(chatCalls(stack), before, 'nothing reached the upstream');
  });

  QUnit.test('400: a body that is not a JSON object', async (assert) => {
    const before = chatCalls(stack);
    for (const body of ['[1,2,3]', '"a string"', '42', 'null', 'true', '']) {
      await assertOpenAiError(assert, await chat(stack, key, body), 400, 'invalid_request');
    }
    assert.strictEqual(chatCalls(stack), before, 'nothing reached the upstream');
  });

  QUnit.test('400: wrongly typed stream or model', async (assert) => {
    const stream = await assertOpenAiError(assert, await chat(stack, key, { messages: messages(), stream: 'yes' }), 400, 'invalid_request');
    assert.strictEqual(stream.param, 'stream');
    const model = await assertOpenAiError(assert, await chat(stack, key, { messages: messages(), model: 42 }), 400, 'invalid_request');
    assert.strictEqual(model.param, 'model');
  });

  QUnit.test('401: missing, malformed, unknown and revoked keys', async (assert) => {
    const before = chatCalls(stack);
    const body = { model: 'openai/gpt-4o', messages: messages() };
    await assertOpenAiError(assert, await chat(stack, null, body), 401, 'invalid_api_key');
    const basic = await chat(stack, null, body, { headers: { authorization: `Basic ${key}`, 'content-type': 'application/json' } });
    await assertOpenAiError(assert, basic, 401, 'invalid_api_key');
    await assertOpenAiError(assert, await chat(stack, 'mg-not-a-real-key', body), 401, 'invalid_api_key');
    await assertOpenAiError(assert, await chat(stack, stack.adminToken, body), 401, 'invalid_api_key');

    const created = await stack.admin('POST', '/admin/users', { id: 'soon-revoked' });
    const { api_key: revokedKey, key_id: keyId } = await created.json() as { api_key: string; key_id: string };
    await stack.admin('POST', '/admin/users/soon-revoked/credits', { amount_usd: '1.00' });
    assert.strictEqual((await fetch(`${stack.url}/v1/credits`, { headers: { authorization: `Bearer ${revokedKey}` } })).status, 200, 'the key works before');
    assert.strictEqual((await stack.admin('DELETE', `/admin/keys/${keyId}`)).status, 200);
    const error = await assertOpenAiError(assert, await chat(stack, revokedKey, body), 401, 'invalid_api_key');
    assert.strictEqual(error.type, 'authentication_error');
    for (const path of ['/v1/credits', '/v1/models', '/api/v1/credits']) {
      await assertOpenAiError(assert, await fetch(`${stack.url}${path}`, { headers: { authorization: `Bearer ${revokedKey}` } }), 401, 'invalid_api_key');
      await assertOpenAiError(assert, await fetch(`${stack.url}${path}`), 401, 'invalid_api_key');
    }
    assert.strictEqual(chatCalls(stack), before, 'nothing reached the upstream');
  });

  QUnit.test('402: a user with a zero balance', async (assert) => {
    const broke = await stack.createUser('broke', '0');
    const before = chatCalls(stack);
    for (const stream of [false, true]) {
      const error = await assertOpenAiError(assert, await chat(stack, broke, { model: 'openai/gpt-4o', stream, messages: messages() }), 402, 'insufficient_credits');
      assert.strictEqual(error.type, 'insufficient_quota');
    }
    assert.strictEqual(chatCalls(stack), before, 'nothing reached the upstream');
    assertNano(assert, await ledgerUsageNano(stack.db.pool, 'broke'), 0n);
  });

  QUnit.test('404: unknown routes and methods', async (assert) => {
    const cases: Array<[string, string]> = [['GET', '/nope'], ['POST', '/v1/chat/nope'], ['GET', '/v1/chat/completions'],
      ['POST', '/v2/chat/completions'], ['DELETE', '/v1/models'], ['GET', '/api/v1/embeddings']];
    for (const [method, path] of cases) {
      const response = await fetch(`${stack.url}${path}`, { method, headers: { authorization: `Bearer ${key}` } });
      await assertOpenAiError(assert, response, 404, 'not_found');
    }
  });

  QUnit.test('the refused calls above left no request rows and no charge', async (assert) => {
    await assertBooks(assert, stack, 'bad-input');
    const rows = await stack.db.pool.query<{ n: number }>('select count(*)::integer as n from requests');
    assert.strictEqual(rows.rows[0]!.n, 0, 'no request was admitted');
  });
});

QUnit.module('bad input: configured limits', (hooks) => {
  let stack: TestStack;
  const bodyBytesMax = 2048;
  hooks.before(async () => { stack = await startStack({ env: { MIN_BALANCE_USD: '1.00', BODY_BYTES_MAX: String(bodyBytesMax) } }); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('402: balance exactly at MIN_BALANCE_USD is refused; one nano-dollar above is admitted', async (assert) => {
    const atMin = await stack.createUser('at-min', '1.00');
    await assertOpenAiError(assert, await chat(stack, atMin, { model: 'openai/gpt-4o', messages: messages() }), 402, 'insufficient_credits');
    const above = await stack.createUser('above-min', '1.000000001');
    const response = await chat(stack, above, { model: 'openai/gpt-4o', messages: messages() });
    assert.strictEqual(response.status, 200, await response.text());
    await assertBooks(assert, stack, 'above-min');
    // Now below the minimum: the overdraft bound means the next call is refused.
    await assertOpenAiError(assert, await chat(stack, above, { model: 'openai/gpt-4o', messages: messages() }), 402, 'insufficient_credits');
    assert.strictEqual(generationCount(stack, 'at-min'), 0, 'the refused user never reached the upstream');
  });

  QUnit.test('413: a body over BODY_BYTES_MAX; just under it is accepted', async (assert) => {
    const key = await stack.createUser('big-body', '5.00');
    const big = { model: 'openai/gpt-4o', messages: messages('x'.repeat(bodyBytesMax + 100)) };
    const error = await assertOpenAiError(assert, await chat(stack, key, big), 413, 'payload_too_large');
    assert.strictEqual(error.type, 'invalid_request_error');
    const huge = JSON.stringify({ model: 'openai/gpt-4o', messages: messages('x'.repeat(8_000_000)) });
    await assertOpenAiError(assert, await chat(stack, key, huge), 413, 'payload_too_large');
    // Without a Content-Length the limit is enforced while reading.
    const chunked = new ReadableStream<Uint8Array>({ start(controller) { controller.enqueue(new TextEncoder().encode(huge)); controller.close(); } });
    await assertOpenAiError(assert, await chat(stack, key, '', { body: chunked, duplex: 'half' } as RequestInit), 413, 'payload_too_large');
    const fits = { model: 'openai/gpt-4o', messages: messages('x'.repeat(bodyBytesMax - 200)) };
    assert.true(JSON.stringify(fits).length < bodyBytesMax);
    const ok = await chat(stack, key, fits);
    assert.strictEqual(ok.status, 200, await ok.text());
    await assertBooks(assert, stack, 'big-body');
    assert.strictEqual(generationCount(stack, 'big-body'), 1, 'only the body within the limit went upstream');
  });
});

function generationCount(stack: TestStack, user: string): number {
  return stack.sim.generations().filter((g) => g.user === user).length;
}

QUnit.module('bad input: upstream unreachable', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => {
    stack = await startStack({ env: { OPENROUTER_BASE_URL: `http://127.0.0.1:${await closedPort()}/api/v1` } });
  });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('502: nothing listens at OPENROUTER_BASE_URL', async (assert) => {
    const key = await stack.createUser('unreachable');
    for (const stream of [false, true]) {
      const response = await chat(stack, key, { model: 'openai/gpt-4o', stream, messages: messages() });
      const requestId = requestIdOf(response);
      const error = await assertOpenAiError(assert, response, 502, 'upstream_unreachable');
      assert.strictEqual(error.type, 'upstream_error');
      assert.strictEqual(await settledState(stack, requestId), 'failed', 'never reached upstream: failed, nothing to bill');
    }
    await assertOpenAiError(assert, await fetch(`${stack.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } }), 502, 'upstream_unreachable');
    assertNano(assert, await ledgerUsageNano(stack.db.pool, 'unreachable'), 0n);
  });
});

QUnit.module('bad input: upstream timeouts', (hooks) => {
  let stack: TestStack;
  const timeoutMs = 300;
  // A non-streaming answer's headers arrive only when the generation is done, so for it the
  // header wait is UPSTREAM_DURATION_MS_MAX (its minimum, 1000 ms, here).
  const durationMaxMs = 1_000;
  hooks.before(async () => {
    stack = await startStack({ env: { UPSTREAM_TIMEOUT_MS: String(timeoutMs), UPSTREAM_IDLE_TIMEOUT_MS: String(timeoutMs), UPSTREAM_DURATION_MS_MAX: String(durationMaxMs) } });
  });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('504: a non-streaming answer not complete within UPSTREAM_DURATION_MS_MAX', async (assert) => {
    const key = await stack.createUser('slow');
    const started = Date.now();
    const response = await chat(stack, key, { model: 'openai/gpt-4o', messages: messages(), sim: { latency_ms: 2_500 } });
    const elapsedMs = Date.now() - started;
    const requestId = requestIdOf(response);
    const error = await assertOpenAiError(assert, response, 504, 'upstream_timeout');
    assert.strictEqual(error.type, 'upstream_error');
    assert.true(elapsedMs >= durationMaxMs && elapsedMs < 2_400, `answered after ${elapsedMs} ms`);
    // The upstream may still bill it, but no generation id ever arrived: the request stays
    // visible as unresolved for an operator, never silently dropped.
    assert.strictEqual(await settledState(stack, requestId), 'unresolved');
    assert.strictEqual((await requestRow(stack, requestId))?.reason, 'upstream_timeout');
    await stack.sim.whenIdle(5_000);
  });

  QUnit.test('a stream that falls silent past UPSTREAM_IDLE_TIMEOUT_MS: relayed so far, ended in the error form, billed what the upstream billed', async (assert) => {
    const user = 'stalled';
    const key = await stack.createUser(user);
    const response = await chat(stack, key, { model: 'openai/gpt-4o', stream: true, messages: messages(), sim: { chunk_delay_ms: 1_500, completion_tokens: 4 } });
    assert.strictEqual(response.status, 200);
    const read = await readSse(response);
    assert.strictEqual(contentEvents(read.events).length, 1, 'the first token was relayed');
    const last = JSON.parse(read.events.at(-1)!.replace(/^data: /, '')) as { error?: unknown; choices?: Array<{ finish_reason: string }> };
    assert.true(last.error !== undefined && last.choices?.[0]?.finish_reason === 'error', `ended in the mid-stream error form: ${read.events.at(-1)}`);
    assert.false(read.text.includes('[DONE]'));
    await stack.sim.whenIdle(5_000);
    const record = generationsOf(stack, user)[0]!;
    assert.true(record.cancelled, 'the proxy dropped the stalled upstream');
    await assertBooks(assert, stack, user);
    assert.strictEqual(await settledState(stack, requestIdOf(response)), 'settled');
  });
});
