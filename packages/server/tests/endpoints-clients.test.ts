// Every OpenRouter endpoint metered (issue 12): the official clients, unmodified, pointed at
// the proxy, each billed exactly what the simulator billed; and per endpoint the money paths
// chat has (error before output, mid-stream error, disconnect, a stream without usage).
import Anthropic from '@anthropic-ai/sdk';
import { OpenRouter } from '@openrouter/sdk';
import OpenAI from 'openai';
import { startStack, type TestStack } from '@metergate/testkit';
import { assertBooks, HTTP_TIMEOUT_MS, generationsOf, readSse, requestIdOf, settledState } from './helpers.js';

async function endpointsOf(stack: TestStack, user: string): Promise<string[]> {
  const rows = await stack.db.pool.query<{ endpoint: string }>(
    `select endpoint from ledger_entries where user_id = $1::text and kind = 'usage' order by id`, [user]);
  return rows.rows.map((row) => row.endpoint);
}

QUnit.module('every endpoint, official clients', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('openai: responses (stream and not), completions, embeddings', async (assert) => {
    const user = 'ep-openai';
    const apiKey = await stack.createUser(user);
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey, maxRetries: 0, timeout: HTTP_TIMEOUT_MS });
    const response = await client.responses.create({ model: 'openai/gpt-4o', input: 'Say hi', max_output_tokens: 50 });
    assert.strictEqual(response.status, 'completed');
    assert.true(response.output_text.length > 0, 'output text');
    const stream = await client.responses.create({ model: 'openai/gpt-4o-mini', input: [{ role: 'user', content: 'Say hi' }], stream: true });
    let text = '';
    let completed: OpenAI.Responses.Response | null = null;
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') completed = event.response;
    }
    assert.true(text.includes('日本'), `streamed text intact: ${text}`);
    assert.true((completed?.usage?.output_tokens ?? 0) > 0, 'usage on response.completed');
    const legacy = await client.completions.create({ model: 'openai/gpt-4o-mini', prompt: 'Say hi', max_tokens: 20 });
    assert.true((legacy.choices[0]?.text ?? '').length > 0);
    const legacyStream = await client.completions.create({ model: 'openai/gpt-4o-mini', prompt: 'Say hi', stream: true });
    let legacyText = '';
    for await (const chunk of legacyStream) legacyText += chunk.choices[0]?.text ?? '';
    assert.true(legacyText.length > 0, 'legacy stream text');
    const embedded = await client.embeddings.create({ model: 'openai/text-embedding-3-small', input: ['one text', 'another text'] });
    assert.strictEqual(embedded.data.length, 2);
    assert.true(embedded.data[0]!.embedding.length > 0, 'vector decoded by the client');
    const billed = await assertBooks(assert, stack, user);
    assert.true(billed > 0n, 'something was billed');
    assert.strictEqual(generationsOf(stack, user).length, 5);
    assert.deepEqual((await endpointsOf(stack, user)).sort(), ['completions', 'completions', 'embeddings', 'responses', 'responses']);
  });

  QUnit.test('anthropic: messages.create (x-api-key) and messages.stream (Bearer via /api)', async (assert) => {
    const user = 'ep-anthropic';
    const apiKey = await stack.createUser(user);
    const client = new Anthropic({ baseURL: stack.url, apiKey, maxRetries: 0, timeout: HTTP_TIMEOUT_MS });
    const message = await client.messages.create({ model: 'anthropic/claude-sonnet-4', max_tokens: 64, messages: [{ role: 'user', content: 'Say hi' }] });
    assert.strictEqual(message.type, 'message');
    assert.true(message.content.length > 0 && message.content[0]!.type === 'text');
    const bearer = new Anthropic({ baseURL: `${stack.url}/api`, authToken: apiKey, apiKey: null, maxRetries: 0, timeout: HTTP_TIMEOUT_MS });
    const stream = bearer.messages.stream({ model: 'anthropic/claude-sonnet-4', max_tokens: 64, messages: [{ role: 'user', content: 'Say hi' }] });
    let text = '';
    stream.on('text', (delta) => { text += delta; });
    const final = await stream.finalMessage();
    assert.true(text.includes('日本'), `streamed text: ${text}`);
    assert.true(final.usage.output_tokens > 0, 'cumulative usage from message_delta');
    await assertBooks(assert, stack, user);
    assert.deepEqual(await endpointsOf(stack, user), ['messages', 'messages']);
    const forwarded = stack.sim.requestLog.filter((entry) => entry.path.endsWith('/messages'));
    assert.true(forwarded.every((entry) => entry.authorization !== `Bearer ${apiKey}`), "the user's key never goes upstream");

    const wrong = new Anthropic({ baseURL: stack.url, apiKey: 'mg-wrong', maxRetries: 0, timeout: HTTP_TIMEOUT_MS });
    try {
      await wrong.messages.create({ model: 'anthropic/claude-sonnet-4', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] });
      assert.true(false, 'should have thrown');
    } catch (error) {
      assert.true(error instanceof Anthropic.AuthenticationError, String(error));
      assert.strictEqual(((error as InstanceType<typeof Anthropic.APIError>).error as { error?: { type?: string } }).error?.type, 'authentication_error');
    }
  });

  QUnit.test('@openrouter/sdk chat, stream and not', async (assert) => {
    const user = 'ep-openrouter';
    const apiKey = await stack.createUser(user);
    const client = new OpenRouter({ apiKey, serverURL: `${stack.url}/api/v1` });
    const result = await client.chat.send({ chatRequest: { model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'Say hi' }], stream: false } });
    assert.true(!(Symbol.asyncIterator in result) && (result.usage?.completionTokens ?? 0) > 0, 'usage validated by the SDK');
    const stream = await client.chat.send({ chatRequest: { model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'Say hi' }], stream: true } });
    let chunks = 0;
    if (Symbol.asyncIterator in stream) for await (const chunk of stream) chunks += chunk.choices.length >= 0 ? 1 : 0;
    assert.true(chunks > 2, `${chunks} chunks`);
    await assertBooks(assert, stack, user);
  });
});

/** The event a client parses as an error, in each endpoint's own stream format. */
const isErrorEvent: Record<string, (event: string) => boolean> = {
  '/v1/responses': (event) => (JSON.parse(event.replace(/^data: /, '')) as { type?: string }).type === 'error',
  '/v1/messages': (event) => event.startsWith('event: error\n') && (JSON.parse(event.split('\ndata: ')[1]!) as { type?: string }).type === 'error',
  '/v1/completions': (event) => {
    const chunk = JSON.parse(event.replace(/^data: /, '')) as { error?: unknown; choices?: Array<{ finish_reason?: string }> };
    return chunk.error !== undefined && chunk.choices?.[0]?.finish_reason === 'error';
  },
};

const STREAMING: Array<{ path: string; body: Record<string, unknown> }> = [
  { path: '/v1/responses', body: { model: 'openai/gpt-4o', input: 'hello there' } },
  { path: '/v1/messages', body: { model: 'anthropic/claude-sonnet-4', max_tokens: 200, messages: [{ role: 'user', content: 'hello there' }] } },
  { path: '/v1/completions', body: { model: 'openai/gpt-4o', prompt: 'hello there' } },
];

QUnit.module('every endpoint, money paths', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  const post = (key: string, path: string, body: Record<string, unknown>, signal?: AbortSignal) => fetch(`${stack.url}${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body), signal,
  });

  for (const { path, body } of STREAMING) {
    QUnit.test(`${path}: error before output, mid-stream error, stream without usage, disconnect`, async (assert) => {
      const user = `money${path.replace(/\//g, '-')}`;
      const key = await stack.createUser(user);
      const before = await post(key, path, { ...body, stream: true, sim: { error_before: { status: 429 } } });
      assert.strictEqual(before.status, 429, 'relayed status');
      await before.text();
      assert.strictEqual(await settledState(stack, requestIdOf(before)), 'failed', 'nothing charged');

      const mid = await post(key, path, { ...body, stream: true, sim: { completion_tokens: 20, error_after_tokens: 5 } });
      assert.strictEqual(mid.status, 200);
      await readSse(mid);
      const lookedUp = await post(key, path, { ...body, stream: true, sim: { omit_usage: true, completion_tokens: 6 } });
      const read = await readSse(lookedUp);
      assert.true(read.events.length > 3, 'stream relayed');
      assert.strictEqual(await settledState(stack, requestIdOf(lookedUp)), 'settled', 'settled from the lookup');

      const cutShort = await post(key, path, { ...body, stream: true, sim: { cut_after_tokens: 4, completion_tokens: 10 } });
      const cutRead = await readSse(cutShort);
      assert.true(isErrorEvent[path]!(cutRead.events.at(-1)!), `an upstream cut ends in this endpoint's error event: ${cutRead.events.at(-1)}`);
      assert.false(cutRead.text.includes('[DONE]') || cutRead.text.includes('message_stop'), 'no terminal event for a cut stream');
      assert.strictEqual(await settledState(stack, requestIdOf(cutShort)), 'settled', 'the part billed is settled from the lookup');

      const nonStream = await post(key, path, { ...body, sim: { completion_tokens: 12, error_after_tokens: 3 } });
      assert.strictEqual(nonStream.status, 200, 'an error during a non-streaming generation: the partial output');
      await nonStream.text();
      assert.strictEqual(await settledState(stack, requestIdOf(nonStream)), 'settled');

      const abort = new AbortController();
      const cut = await post(key, path, { ...body, stream: true, sim: { completion_tokens: 500, chunk_delay_ms: 20 } }, abort.signal);
      const reader = cut.body!.getReader();
      await reader.read();
      await reader.read();
      abort.abort();
      await stack.sim.whenIdle(10_000);
      const cancelled = generationsOf(stack, user).at(-1)!;
      assert.true(cancelled.cancelled && cancelled.completionTokens < 500, `cancelled at ${cancelled.completionTokens} tokens`);
      await assertBooks(assert, stack, user);
    });
  }

  QUnit.test('/v1/embeddings: an error costs nothing; a cost missing from the answer comes from the lookup', async (assert) => {
    const user = 'money-embeddings';
    const key = await stack.createUser(user);
    const body = { model: 'openai/text-embedding-3-small', input: 'embed me' };
    const refused = await post(key, '/v1/embeddings', { ...body, sim: { error_before: { status: 503 } } });
    assert.strictEqual(refused.status, 503);
    await refused.text();
    assert.strictEqual(await settledState(stack, requestIdOf(refused)), 'failed');
    const noCost = await post(key, '/api/v1/embeddings', { ...body, sim: { omit_usage: true } });
    assert.strictEqual(noCost.status, 200);
    await noCost.text();
    assert.strictEqual(await settledState(stack, requestIdOf(noCost)), 'settled');
    const billed = await assertBooks(assert, stack, user);
    assert.true(billed > 0n, 'the input was billed');
  });

  QUnit.test('concurrent same-user calls across endpoints obey the barrier and holds', async (assert) => {
    const user = 'money-mixed';
    const key = await stack.createUser(user, '0.01');
    const calls = await Promise.all(Array.from({ length: 12 }, (_v, index) => {
      const { path, body } = STREAMING[index % STREAMING.length]!;
      return post(key, path, { ...body, stream: index % 2 === 0, sim: { completion_tokens: 40, chunk_delay_ms: 2 } })
        .then(async (response) => { await response.text(); return response.status; });
    }));
    assert.true(calls.every((status) => status === 200 || status === 402), `statuses ${calls.join(',')}`);
    await assertBooks(assert, stack, user);
    const row = await stack.db.pool.query<{ balance_nano: string; held_nano: string }>('select balance_nano::text, held_nano::text from users where id = $1::text', [user]);
    assert.strictEqual(row.rows[0]!.held_nano, '0', 'every hold released');
    assert.true(BigInt(row.rows[0]!.balance_nano) >= -10_000_000n, `overdraft within one call: ${row.rows[0]!.balance_nano}`);
  });
});

QUnit.module('every endpoint, holds under concurrency (reserve)', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack({ env: { BARRIER: 'reserve' } }); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('concurrent same-user calls across endpoints never hold more than the balance', async (assert) => {
    const user = 'reserve-mixed';
    const key = await stack.createUser(user, '0.02');
    const statuses = await Promise.all(Array.from({ length: 16 }, async (_v, index) => {
      const { path, body } = STREAMING[index % STREAMING.length]!;
      const response = await fetch(`${stack.url}${path}`, {
        method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ...body, max_tokens: 400, max_output_tokens: 400, stream: index % 2 === 0, sim: { completion_tokens: 30, chunk_delay_ms: 5 } }),
      });
      await response.text();
      return response.status;
    }));
    assert.true(statuses.includes(200) && statuses.every((status) => status === 200 || status === 402), `statuses ${statuses.join(',')}`);
    await assertBooks(assert, stack, user);
    const row = await stack.db.pool.query<{ balance_nano: string; held_nano: string }>('select balance_nano::text, held_nano::text from users where id = $1::text', [user]);
    assert.strictEqual(row.rows[0]!.held_nano, '0', 'every hold released');
    assert.true(BigInt(row.rows[0]!.balance_nano) >= 0n, `reserve mode never overdraws: ${row.rows[0]!.balance_nano}`);
  });
});
