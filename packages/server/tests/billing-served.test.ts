// What served a call and what it really cost: BYOK usage (cost = OpenRouter's fee only, the
// provider's charge apart) is billed as their sum, from the response or the generation lookup;
// the ledger names the model and provider that served (not the one asked for) and reports
// group by it.
import { reports } from '@metergate/db';
import { startStack, type TestStack } from '@metergate/testkit';
import { assertBooks, assertNano, chat, generation, messages, readSse, requestIdOf, settledState, type Body } from './helpers.js';

interface LedgerRow {
  model: string | null;
  requested_model: string | null;
  provider: string | null;
  is_byok: boolean | null;
  upstream_cost_nano: string;
  generation_id: string | null;
}

async function usageRow(stack: TestStack, requestId: string): Promise<LedgerRow> {
  const result = await stack.db.pool.query<LedgerRow>(
    `select model, requested_model, provider, is_byok, upstream_cost_nano::text, generation_id
       from ledger_entries where request_id = $1::uuid and kind = 'usage'`, [requestId]);
  if (result.rows.length !== 1) throw new Error(`${result.rows.length} usage rows for ${requestId}`);
  return result.rows[0]!;
}

/** Sends a call, reads it to the end, waits until it is settled; returns its request id. */
async function call(assert: Assert, stack: TestStack, key: string, body: Body): Promise<{ requestId: string; generationId: string }> {
  const response = await chat(stack, key, body);
  assert.strictEqual(response.status, 200);
  const generationId = response.headers.get('x-generation-id');
  if (body.stream === true) await readSse(response); else await response.text();
  const requestId = requestIdOf(response);
  assert.strictEqual(await settledState(stack, requestId), 'settled', 'settled');
  return { requestId, generationId: generationId! };
}

QUnit.module('billing: BYOK cost and the served model', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  const BYOK_CASES: Array<{ what: string; sim: Record<string, unknown>; stream: boolean }> = [
    { what: 'json', sim: {}, stream: false },
    { what: 'stream', sim: {}, stream: true },
    { what: 'stream, usage on the finish chunk', sim: { usage_in_last_choice_chunk: true }, stream: true },
    { what: 'json, cost from /generation', sim: { omit_usage: true }, stream: false },
    { what: 'stream, cost from /generation', sim: { omit_usage: true }, stream: true },
  ];
  BYOK_CASES.forEach(({ what, sim, stream }, index) => {
    QUnit.test(`BYOK (${what}): charged the provider's charge plus OpenRouter's fee, is_byok recorded`, async (assert) => {
      const user = `byok-${index}`;
      const key = await stack.createUser(user);
      const { requestId, generationId } = await call(assert, stack, key, {
        model: 'anthropic/claude-sonnet-4', stream, messages: messages(), sim: { byok: true, completion_tokens: 7, ...sim },
      });
      const record = generation(stack, generationId);
      assert.true(record.isByok && record.upstreamInferenceNano !== null && record.upstreamInferenceNano > 0n, 'a BYOK generation');
      const row = await usageRow(stack, requestId);
      assertNano(assert, BigInt(row.upstream_cost_nano), record.costNano, 'upstream cost = fee + provider charge');
      assert.true(BigInt(row.upstream_cost_nano) > record.upstreamInferenceNano!, 'more than the provider charge alone');
      assert.strictEqual(row.is_byok, true, 'is_byok recorded');
      await assertBooks(assert, stack, user);
    });
  });

  QUnit.test('not BYOK: is_byok false, cost as reported', async (assert) => {
    const key = await stack.createUser('not-byok');
    for (const stream of [false, true]) {
      const { requestId, generationId } = await call(assert, stack, key, { model: 'openai/gpt-4o', stream, messages: messages() });
      const row = await usageRow(stack, requestId);
      assert.strictEqual(row.is_byok, false);
      assertNano(assert, BigInt(row.upstream_cost_nano), generation(stack, generationId).costNano);
    }
    await assertBooks(assert, stack, 'not-byok');
  });

  const SERVED_CASES: Array<{ what: string; body: Body; requested: string | null; served: string; provider: string }> = [
    { what: 'json with only `models`', body: { models: ['meta-llama/llama-3.1-8b-instruct', 'openai/gpt-4o'] }, requested: null, served: 'meta-llama/llama-3.1-8b-instruct', provider: 'DeepInfra' },
    { what: 'stream with only `models`', body: { models: ['perplexity/sonar'], stream: true }, requested: null, served: 'perplexity/sonar', provider: 'Perplexity' },
    { what: 'stream with only `models`, cost from /generation', body: { models: ['openai/gpt-4o-mini'], stream: true, sim: { omit_usage: true } }, requested: null, served: 'openai/gpt-4o-mini', provider: 'OpenAI' },
    { what: 'json with only `models`, cost from /generation', body: { models: ['anthropic/claude-sonnet-4'], sim: { omit_usage: true } }, requested: null, served: 'anthropic/claude-sonnet-4', provider: 'Anthropic' },
    { what: 'json with `model`', body: { model: 'openai/gpt-4o' }, requested: 'openai/gpt-4o', served: 'openai/gpt-4o', provider: 'OpenAI' },
  ];
  SERVED_CASES.forEach(({ what, body, requested, served, provider }, index) => {
    QUnit.test(`served model (${what}): the ledger names the model and provider that served`, async (assert) => {
      const user = `served-${index}`;
      const key = await stack.createUser(user);
      const { requestId } = await call(assert, stack, key, { messages: messages(), ...body });
      const row = await usageRow(stack, requestId);
      assert.deepEqual([row.model, row.requested_model, row.provider], [served, requested, provider]);
      await assertBooks(assert, stack, user);
    });
  });

  QUnit.test('reports group by the served model; ledger JSON and CSV carry provider, is_byok, requested_model', async (assert) => {
    const key = await stack.createUser('served-report');
    await call(assert, stack, key, { models: ['meta-llama/llama-3.1-8b-instruct'], messages: messages() });
    await call(assert, stack, key, { models: ['meta-llama/llama-3.1-8b-instruct'], stream: true, messages: messages(), sim: { byok: true } });
    const usage = await (await stack.admin('GET', '/admin/usage?group_by=model&user_id=served-report')).json() as { data: Array<{ key: string; requests: number }> };
    assert.deepEqual(usage.data.map((r) => [r.key, r.requests]), [['meta-llama/llama-3.1-8b-instruct', 2]], 'one group: the served model');
    const rollup = await stack.db.pool.query<{ model: string; requests: string }>(
      `select model, sum(requests)::text as requests from usage_hourly where user_id = 'served-report' group by model`);
    assert.deepEqual(rollup.rows.map((r) => [r.model, r.requests]), [['meta-llama/llama-3.1-8b-instruct', '2']], 'the hourly rollup keys by the served model');
    assert.deepEqual(await reports.rollupMismatches(stack.db.pool), [], 'every rollup equals the sums over the ledger');
    const ledger = await (await stack.admin('GET', '/admin/ledger?user_id=served-report&kind=usage')).json() as { data: Array<Record<string, unknown>> };
    assert.deepEqual(ledger.data.map((e) => [e.model, e.requested_model, e.provider, e.is_byok]), [
      ['meta-llama/llama-3.1-8b-instruct', null, 'DeepInfra', true],
      ['meta-llama/llama-3.1-8b-instruct', null, 'DeepInfra', false],
    ]);
    const csv = await (await stack.admin('GET', '/admin/ledger?format=csv&user_id=served-report&kind=usage')).text();
    const [header, first] = csv.split('\r\n');
    const columns = header!.split(',');
    for (const column of ['model', 'requested_model', 'provider', 'is_byok']) assert.true(columns.includes(column), `CSV column ${column}`);
    const cells = first!.split(',');
    assert.strictEqual(cells[columns.indexOf('provider')], 'DeepInfra');
    assert.strictEqual(cells[columns.indexOf('is_byok')], 'true');
    assert.strictEqual(cells[columns.indexOf('requested_model')], '');
  });
});
