// Reserve mode (BARRIER=reserve): the user's lock only around admission, so one user's calls
// run concurrently, each holding its worst case; holds never promise more than the balance.
import { performance } from 'node:perf_hooks';
import { eventually, startStack, type TestStack } from '@metergate/testkit';
import { defaultBudget, priceRequest, worstCaseNano } from '../src/holds/worst-case.js';
import { assertBooks, assertNano, assertOpenAiError, chat, directChat, generationsOf, messages, readSse, type Body } from './helpers.js';

async function userRow(stack: TestStack, user: string): Promise<{ balance: bigint; held: bigint }> {
  const { rows } = await stack.db.pool.query<{ balance: string; held: string }>(
    'select balance_nano::text as balance, held_nano::text as held from users where id = $1::text', [user]);
  return { balance: BigInt(rows[0]!.balance), held: BigInt(rows[0]!.held) };
}

/** The hold (multiplier ×1) the proxy computes for `body`, from its own price book. */
function holdOf(stack: TestStack, body: Body): bigint {
  const pricing = priceRequest(body, (id) => stack.runtime.services.priceBook.lookup(id));
  if (!pricing.priced) throw new Error(pricing.reason);
  return worstCaseNano(pricing.shape, defaultBudget(pricing.shape)!);
}

function formatUsd(nano: bigint): string {
  return `${nano / 1_000_000_000n}.${(nano % 1_000_000_000n).toString().padStart(9, '0')}`;
}

QUnit.module('holds (reserve mode): concurrency', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack({ env: { BARRIER: 'reserve' } }); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('one user, 100 concurrent streams that fit the balance: all served at once (wall within 1.5× direct)', async (assert) => {
    const user = 'fanout';
    const key = await stack.createUser(user, '10.00');
    const body: Body = { model: 'openai/gpt-4o-mini', stream: true, max_tokens: 100, messages: messages(), sim: { completion_tokens: 20, chunk_delay_ms: 100 } };
    const directStart = performance.now();
    await Promise.all(Array.from({ length: 100 }, async (_, i) => (await directChat(stack, { ...body, user: `direct-fanout-${i}` })).text()));
    const directMs = performance.now() - directStart;
    const start = performance.now();
    const results = await Promise.all(Array.from({ length: 100 }, async () => {
      const response = await chat(stack, key, body);
      const read = await readSse(response);
      return { status: response.status, done: read.events.at(-1) === 'data: [DONE]' };
    }));
    const wallMs = performance.now() - start;
    assert.strictEqual(results.filter((r) => r.status === 200 && r.done).length, 100, 'all 100 streams served to the end');
    assert.true(wallMs <= 1.5 * directMs + 250, `wall ${Math.round(wallMs)} ms vs direct ${Math.round(directMs)} ms (serialize would take 100 × ~2 s)`);
    await assertBooks(assert, stack, user);
    assertNano(assert, (await userRow(stack, user)).held, 0n, 'every hold released');
  });

  QUnit.test('a user who can afford 3 of 10 concurrent calls: exactly 3 served, 7 × 402; books equal the simulator', async (assert) => {
    const user = 'three-of-ten';
    const body: Body = { model: 'openai/gpt-4o', stream: true, max_tokens: 200, messages: messages(), sim: { completion_tokens: 30, chunk_delay_ms: 20 } };
    const hold = holdOf(stack, body);
    const key = await stack.createUser(user, formatUsd(3n * hold + hold / 2n));
    const responses = await Promise.all(Array.from({ length: 10 }, async () => {
      const response = await chat(stack, key, body);
      return { status: response.status, text: await response.text() };
    }));
    const statuses = responses.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 200, 402, 402, 402, 402, 402, 402, 402], 'three served, seven refused');
    const refusal = JSON.parse(responses.find((r) => r.status === 402)!.text) as { error: { code: string; message: string; param: string } };
    assert.strictEqual(refusal.error.code, 'insufficient_credits');
    assert.true(/max_tokens=\d+/.test(refusal.error.message), `the 402 says the most it can afford: ${refusal.error.message}`);
    await assertBooks(assert, stack, user);
    const { balance, held } = await userRow(stack, user);
    assertNano(assert, held, 0n, 'holds released');
    assert.true(balance >= 0n, 'never below the minimum');
  });

  QUnit.test('no max_tokens: the budget the user can afford is sent upstream, and the call costs at most its hold', async (assert) => {
    const user = 'budgeted';
    const key = await stack.createUser(user, '0.002');
    const response = await chat(stack, key, { model: 'openai/gpt-4o', messages: messages(), sim: { completion_tokens: 5_000 } });
    assert.strictEqual(response.status, 200, 'served');
    await response.text();
    const [sent] = generationsOf(stack, user);
    assert.true(sent !== undefined && sent.completionTokens > 16 && sent.completionTokens < 5_000, `cut to an affordable budget (${sent?.completionTokens} tokens)`);
    await assertBooks(assert, stack, user);
    assert.true((await userRow(stack, user)).balance >= 0n, 'the balance stays above the minimum');
  });

  QUnit.test('no max_tokens, a user who can afford the whole output limit: that limit is sent, admitted in one statement without a balance read', async (assert) => {
    const user = 'wellfunded';
    const key = await stack.createUser(user, '50.00');
    const body: Body = { model: 'openai/gpt-4o-mini', messages: messages(), sim: { completion_tokens: 100_000 } };
    const pricing = priceRequest(body, (id) => stack.runtime.services.priceBook.lookup(id));
    if (!pricing.priced) throw new Error(pricing.reason);
    const limit = pricing.shape.completionLimit;
    assert.true(limit !== null && limit > 16n, `the model lists an output limit (${limit})`);
    // Count the affordability reads the admission makes (the statement that reads after_in_flight).
    const pool = stack.runtime.services.pools.write;
    const original = pool.query.bind(pool) as (...args: unknown[]) => unknown;
    let reads = 0;
    (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string }).text ?? '';
      if (text.includes('after_in_flight')) reads += 1;
      return original(...args);
    };
    try {
      const response = await chat(stack, key, body);
      assert.strictEqual(response.status, 200, 'served');
      await response.text();
    } finally {
      (pool as unknown as { query: unknown }).query = original;
    }
    assert.strictEqual(reads, 0, 'no balance read before the admission');
    const [sent] = generationsOf(stack, user);
    assert.strictEqual(String(sent?.completionTokens), String(limit), 'max_tokens = the model output limit was sent (the simulator stopped there)');
    const { rows } = await stack.db.pool.query<{ tokens: number }>(
      'select hold_completion_tokens as tokens from requests where user_id = $1::text', [user]);
    assert.strictEqual(String(rows[0]?.tokens), String(limit), 'held at that budget');
    await assertBooks(assert, stack, user);
  });

  QUnit.test('a model the price book does not know is refused before anything is held or sent; a pinned price admits it', async (assert) => {
    const user = 'unpriced';
    const key = await stack.createUser(user, '5.00');
    const body: Body = { model: 'vendor/new-model', max_tokens: 10, messages: messages() };
    const error = await assertOpenAiError(assert, await chat(stack, key, body), 400, 'unpriced_model');
    assert.strictEqual(error.param, 'model');
    const rows = (await stack.db.pool.query<{ n: number }>('select count(*)::integer as n from requests where user_id = $1::text', [user])).rows[0]!.n;
    assert.strictEqual(rows, 0, 'nothing admitted');
    const pinned = await stack.admin('PUT', '/admin/prices', { model: 'vendor/new-model', prompt: '0.000001', completion: '0.000002', context_length: 1000, note: 'launch price' });
    assert.strictEqual(pinned.status, 200, await pinned.clone().text());
    const listed = await (await stack.admin('GET', '/admin/prices')).json() as { data: Array<{ model: string; source: string; completion: string }> };
    const row = listed.data.find((p) => p.model === 'vendor/new-model');
    assert.deepEqual([row?.source, row?.completion], ['operator', '0.000002'], 'pinned exactly, as an operator price');
    // The simulator does not serve it: a 400 from upstream before output, no charge, hold released.
    const relayed = await chat(stack, key, body);
    assert.strictEqual(relayed.status, 400, 'admitted and forwarded; the upstream refused it');
    await relayed.text();
    // The 400 reaches the client just before the request is closed and its hold released.
    const { held } = await eventually(() => userRow(stack, user), (row) => row.held === 0n, 5_000);
    assertNano(assert, held, 0n, 'the hold was released with no charge');
    const unpinned = await stack.admin('DELETE', '/admin/prices?model=vendor%2Fnew-model');
    assert.strictEqual(unpinned.status, 200);
    await assertOpenAiError(assert, await chat(stack, key, body), 400, 'unpriced_model');
  });
});
