// Upstream failures: before output (relayed, nothing charged), the operator's in-flight budget
// (our 503, not the user's 402), mid-stream errors and cut streams (charged what the upstream
// billed).
import { ledgerUsageNano, startStack, type TestStack } from '@metergate/testkit';
import {
  assertBooks, assertNano, assertOpenAiError, chat, contentEvents, directChat, generationsOf, messages, readSse, requestIdOf, requestRow,
  settledState, type Body,
} from './helpers.js';

QUnit.module('upstream errors', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  const BEFORE_OUTPUT: Array<{ status: number; retryAfterS?: number; stream: boolean }> = [
    { status: 400, stream: false },
    { status: 400, stream: true },
    { status: 429, retryAfterS: 7, stream: false },
    { status: 429, retryAfterS: 3, stream: true },
    { status: 503, retryAfterS: 11, stream: true },
    { status: 503, stream: false },
  ];
  BEFORE_OUTPUT.forEach(({ status, retryAfterS, stream }, index) => {
    QUnit.test(`error before output ${status}${retryAfterS === undefined ? '' : ` Retry-After ${retryAfterS}`} (${stream ? 'stream' : 'json'}): relayed, nothing charged`, async (assert) => {
      const user = `before-${index}`;
      const key = await stack.createUser(user);
      const errorBefore = { status, message: `steered ${status}`, ...(retryAfterS === undefined ? {} : { retry_after_s: retryAfterS }) };
      const body: Body = { model: 'openai/gpt-4o', stream, messages: messages(), sim: { error_before: errorBefore } };
      const response = await chat(stack, key, body);
      const text = await response.text();
      assert.strictEqual(response.status, status, 'status relayed');
      const direct = await directChat(stack, { ...body, user: `direct-${user}` });
      assert.strictEqual(text, await direct.text(), 'body relayed as the upstream sent it');
      assert.deepEqual(JSON.parse(text), { error: { code: status, message: `steered ${status}` } });
      assert.strictEqual(response.headers.get('retry-after'), retryAfterS === undefined ? null : String(retryAfterS), 'Retry-After kept');
      await stack.sim.whenIdle();
      assertNano(assert, stack.sim.billedNano({ user }), 0n, 'the upstream billed nothing');
      assertNano(assert, await ledgerUsageNano(stack.db.pool, user), 0n, 'nothing charged');
      assert.strictEqual(await settledState(stack, requestIdOf(response)), 'failed', 'request state failed');
      await assertBooks(assert, stack, user);
    });
  });

  QUnit.test("upstream 402 from the operator's in-flight budget: our 503 with Retry-After, never the user's 402", async (assert) => {
    const user = 'budget';
    const key = await stack.createUser(user);
    for (const stream of [false, true]) {
      const response = await chat(stack, key, {
        model: 'openai/gpt-4o', stream, messages: messages(),
        sim: { error_before: { status: 402, message: 'in-flight budget exceeded', metadata: { limit_source: 'openrouter_in_flight_budget' }, retry_after_s: 4 } },
      });
      assert.strictEqual(response.headers.get('retry-after'), '4', 'Retry-After from the upstream');
      const error = await assertOpenAiError(assert, response, 503, 'upstream_busy');
      assert.false(String(error.message).includes('402'), 'no hint that the user is out of credit');
      assert.strictEqual(await settledState(stack, requestIdOf(response)), 'failed');
    }
    await assertBooks(assert, stack, user);
    assertNano(assert, await ledgerUsageNano(stack.db.pool, user), 0n);
  });

  // Only the in-flight budget is worth a retry. The operator's key limit or credit running out
  // stays until the operator acts: a 503 with Retry-After would have every client hammer it.
  const ACCOUNT_LIMITS: Array<{ what: string; metadata?: Record<string, unknown>; source: string }> = [
    { what: "the operator key's limit", metadata: { limit_source: 'key' }, source: 'key' },
    { what: "the operator's credits (no limit_source)", source: 'none' },
    { what: 'an unknown limit_source', metadata: { limit_source: 'account' }, source: 'account' },
  ];
  ACCOUNT_LIMITS.forEach(({ what, metadata, source }, index) => {
    QUnit.test(`upstream 402 from ${what}: our 502 upstream_account_limit, no Retry-After, counted for alerting`, async (assert) => {
      const user = `account-limit-${index}`;
      const key = await stack.createUser(user);
      const metricValue = async () => {
        const text = await (await fetch(`${stack.url}/metrics`)).text();
        const line = text.split('\n').find((l) => l.startsWith(`metergate_upstream_account_limit_total{limit_source="${source}"} `));
        return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
      };
      const before = await metricValue();
      for (const stream of [false, true]) {
        const response = await chat(stack, key, {
          model: 'openai/gpt-4o', stream, messages: messages(),
          sim: { error_before: { status: 402, message: 'Insufficient credits', ...(metadata === undefined ? {} : { metadata }), retry_after_s: 9 } },
        });
        assert.strictEqual(response.headers.get('retry-after'), null, 'not retryable: no Retry-After');
        const error = await assertOpenAiError(assert, response, 502, 'upstream_account_limit');
        assert.false(String(error.message).includes('402'), 'no hint that the user is out of credit');
        assert.strictEqual(await settledState(stack, requestIdOf(response)), 'failed');
      }
      assert.strictEqual(await metricValue(), before + 2, 'metergate_upstream_account_limit_total counts both');
      await assertBooks(assert, stack, user);
      assertNano(assert, await ledgerUsageNano(stack.db.pool, user), 0n);
    });
  });

  QUnit.test('upstream 401 (operator key refused): our 502, not a 401 that blames the user key', async (assert) => {
    const key = await stack.createUser('upstream-401');
    const response = await chat(stack, key, { model: 'openai/gpt-4o', messages: messages(), sim: { error_before: { status: 401 } } });
    await assertOpenAiError(assert, response, 502, 'upstream_auth_failed');
    await assertBooks(assert, stack, 'upstream-401');
  });

  for (const usageOnError of [true, false]) {
    QUnit.test(`mid-stream error ${usageOnError ? 'with' : 'without'} usage: relayed, charged what the upstream billed`, async (assert) => {
      const user = `mid-${usageOnError}`;
      const key = await stack.createUser(user);
      const response = await chat(stack, key, {
        model: 'anthropic/claude-sonnet-4', stream: true, messages: messages(), sim: { error_after_tokens: 4, usage_on_error: usageOnError, completion_tokens: 10 },
      });
      assert.strictEqual(response.status, 200, 'a mid-stream error keeps status 200');
      const read = await readSse(response);
      const last = JSON.parse(read.events.at(-1)!.slice(5)) as { error?: { code: number }; choices: Array<{ finish_reason: string }>; usage?: unknown };
      assert.strictEqual(last.error?.code, 502, "the upstream's error event is relayed last");
      assert.strictEqual(last.choices[0]?.finish_reason, 'error');
      assert.strictEqual(last.usage !== undefined, usageOnError, 'usage on the error event as the upstream sent it');
      assert.false(read.text.includes('[DONE]'), 'no [DONE] after an error');
      await stack.sim.whenIdle();
      assert.true(stack.sim.billedNano({ user }) > 0n, 'the upstream billed the 4 tokens');
      assert.strictEqual(generationsOf(stack, user)[0]?.completionTokens, 4);
      await assertBooks(assert, stack, user);
      assert.strictEqual(await settledState(stack, requestIdOf(response)), 'settled');
    });
  }

  for (const usageOnError of [true, false]) {
    QUnit.test(`non-streaming error during generation ${usageOnError ? 'with' : 'without'} usage: relayed, charged`, async (assert) => {
      const user = `mid-json-${usageOnError}`;
      const key = await stack.createUser(user);
      const response = await chat(stack, key, {
        model: 'openai/gpt-4o', messages: messages(), sim: { error_after_tokens: 3, usage_on_error: usageOnError, completion_tokens: 10 },
      });
      assert.strictEqual(response.status, 200);
      const body = await response.json() as { error?: { code: number }; choices: Array<{ finish_reason: string }> };
      assert.strictEqual(body.error?.code, 502);
      assert.strictEqual(body.choices[0]?.finish_reason, 'error');
      await assertBooks(assert, stack, user);
      assert.true(stack.sim.billedNano({ user }) > 0n);
    });
  }

  QUnit.test('a stream cut without [DONE] or usage is settled from the generation lookup', async (assert) => {
    const user = 'cut';
    const key = await stack.createUser(user);
    const response = await chat(stack, key, { model: 'openai/gpt-4o', stream: true, messages: messages(), sim: { cut_after_tokens: 5, completion_tokens: 10 } });
    assert.strictEqual(response.status, 200);
    const read = await readSse(response);
    assert.false(read.text.includes('data: [DONE]'), 'no [DONE] for a cut stream');
    assert.false(read.text.includes('"usage"'), 'no usage either');
    const last = JSON.parse(read.events.at(-1)!.replace(/^data: /, '')) as { error?: unknown; choices?: Array<{ finish_reason: string }> };
    assert.true(last.error !== undefined && last.choices?.[0]?.finish_reason === 'error',
      `the client is told in the mid-stream error form: ${read.events.at(-1)}`);
    assert.strictEqual(contentEvents(read.events).length, 5, 'every token the upstream sent was relayed');
    await stack.sim.whenIdle();
    const record = generationsOf(stack, user)[0]!;
    assert.strictEqual(record.completionTokens, 5);
    assert.true(record.costNano > 0n);
    await assertBooks(assert, stack, user);
    const row = await requestRow(stack, requestIdOf(response));
    assert.strictEqual(row?.state, 'settled');
    assert.strictEqual(row?.generation_id, record.id);
  });
});
