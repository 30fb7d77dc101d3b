// Non-streaming chat completions relayed untouched and billed exactly; costs the response did
// not carry are found at the generation lookup, the request visible as awaiting_cost meanwhile.
import { usdNumberToNano } from '@metergate/db';
import { startStack, type TestStack } from '@metergate/testkit';
import {
  asForwarded, assertBooks, assertNano, chat, directChat, generation, generationsOf, messages, normalize, readSse, requestIdOf,
  requestRow, settledState, sleep, type Body,
} from './helpers.js';

const MODELS = ['openai/gpt-4o', 'openai/gpt-4o-mini', 'anthropic/claude-sonnet-4', 'meta-llama/llama-3.1-8b-instruct', 'perplexity/sonar'];

QUnit.module('billing: non-streaming', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  MODELS.forEach((model, index) => {
    QUnit.test(`${model}: body relayed untouched and billed exactly`, async (assert) => {
      const user = `json-${index}`;
      const key = await stack.createUser(user);
      const body: Body = { model, messages: messages(`Model ${model} — naïve façade ✓`), sim: { completion_tokens: 5 + index } };
      const response = await chat(stack, key, body);
      const text = await response.text();
      assert.strictEqual(response.status, 200, text);
      assert.true((response.headers.get('content-type') ?? '').startsWith('application/json'));
      const generationId = response.headers.get('x-generation-id');
      const parsed = JSON.parse(text) as { id: string; usage: { cost: number; completion_tokens: number } };
      assert.strictEqual(generationId, parsed.id, 'X-Generation-Id relayed and names the body');
      const direct = await directChat(stack, asForwarded(body, `direct-${user}`));
      const directText = await direct.text();
      assert.strictEqual(normalize(text, generationId!), normalize(directText, direct.headers.get('x-generation-id')!),
        'the JSON is byte for byte what the simulator sends');
      const record = generation(stack, generationId!);
      assertNano(assert, usdNumberToNano(parsed.usage.cost), record.costNano, 'usage.cost untouched');
      assert.strictEqual(parsed.usage.completion_tokens, 5 + index);
      await assertBooks(assert, stack, user);
      assert.strictEqual((await requestRow(stack, requestIdOf(response)))?.state, 'settled');
    });
  });
});

QUnit.module('billing: non-streaming client that leaves', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('the upstream bills a non-streaming generation in full even if the client leaves; so does the ledger', async (assert) => {
    const user = 'json-leaver';
    const key = await stack.createUser(user);
    const abort = new AbortController();
    const pending = chat(stack, key, { model: 'openai/gpt-4o', messages: messages(), sim: { latency_ms: 600, completion_tokens: 9 } }, { signal: abort.signal });
    await sleep(150);
    abort.abort();
    await pending.then(() => assert.true(false, 'should have been aborted'), () => assert.true(true, 'the client gave up'));
    await stack.sim.whenIdle(5_000);
    const [record] = generationsOf(stack, user);
    assert.strictEqual(record?.completionTokens, 9, 'generated in full');
    assert.false(record?.cancelled, 'not cancelled');
    await assertBooks(assert, stack, user);
    assert.true(stack.sim.billedNano({ user }) > 0n);
  });
});

QUnit.module('billing: cost via the generation lookup', (hooks) => {
  let stack: TestStack;
  // The lookup answers 404 for 600 ms after a generation ends, far past the first backoff
  // (50 ms in the test stack), so several lookups miss before one finds the cost.
  const lookup404Ms = 600;
  hooks.before(async () => { stack = await startStack({ simulator: { lookup404Ms } }); });
  hooks.after(async () => { await stack.close(); });

  for (const stream of [false, true]) {
    QUnit.test(`omit_usage, ${stream ? 'streaming' : 'non-streaming'}: awaiting_cost, then the ledger equals the books`, async (assert) => {
      const user = `lookup-${stream ? 'stream' : 'json'}`;
      const key = await stack.createUser(user);
      const response = await chat(stack, key, { model: 'openai/gpt-4o', stream, messages: messages(), sim: { omit_usage: true, completion_tokens: 6 } });
      assert.strictEqual(response.status, 200);
      const requestId = requestIdOf(response);
      const generationId = response.headers.get('x-generation-id')!;
      if (stream) {
        const read = await readSse(response);
        assert.strictEqual(read.events.at(-1), 'data: [DONE]');
        assert.false(read.text.includes('"cost"'), 'the stream carried no cost');
      } else {
        const body = await response.json() as { usage: Record<string, unknown> };
        assert.false('cost' in body.usage, 'the body carried no cost');
      }
      const row = await requestRow(stack, requestId);
      assert.strictEqual(row?.state, 'awaiting_cost', 'visible as awaiting_cost while the lookup still 404s');
      assert.strictEqual(row?.generation_id, generationId, 'with the generation id to look up');
      const states = await stack.db.pool.query<{ n: number }>("select count(*)::integer as n from requests where state = 'awaiting_cost' and user_id = $1::text", [user]);
      assert.strictEqual(states.rows[0]!.n, 1, 'one unsettled request for the user');
      const billed = await assertBooks(assert, stack, user);
      assert.true(billed > 0n);
      assert.strictEqual(await settledState(stack, requestId), 'settled');
      const lookups = stack.sim.requestLog.filter((entry) => entry.path === `/api/v1/generation?id=${encodeURIComponent(generationId)}`);
      assert.true(lookups.length >= 2, `looked up ${lookups.length} times (404s first, then found)`);
      assert.true(lookups.every((entry) => entry.authorization === `Bearer ${stack.runtime.services.config.openRouterApiKey}`), 'lookups use the operator key');
    });
  }
});
