import { startSimulator, formatUsd, completionText, type Simulator, type GenerationRecord } from '../src/index.js';
import {
  API_KEY, authHeaders, chat, contentOf, delay, jsonOf, readSse, userMessages, usdStringToNano,
  type Chunk,
} from './helpers.js';

const TEST_MAX_MS = 10_000;

function only(sim: Simulator): GenerationRecord {
  const records = sim.generations();
  if (records.length !== 1) throw new Error(`expected one generation, got ${records.length}`);
  return records[0]!;
}

/** Nano price of a model read from /models, so the test checks the wire, not the table. */
async function pricesOf(sim: Simulator, model: string): Promise<{ prompt: bigint; completion: bigint; request: bigint }> {
  const listing = (await (await fetch(`${sim.url}/models`, { headers: authHeaders() })).json()) as Chunk;
  const entry = (listing['data'] as Chunk[]).find((candidate) => candidate['id'] === model)!;
  return {
    prompt: usdStringToNano(entry['pricing'].prompt),
    completion: usdStringToNano(entry['pricing'].completion),
    request: usdStringToNano(entry['pricing'].request),
  };
}

QUnit.module('simulator', (hooks) => {
  let sim: Simulator;
  hooks.before(async () => {
    sim = await startSimulator({ apiKey: API_KEY, lookup404Ms: 100 });
  });
  hooks.after(async () => {
    await sim.close();
  });
  hooks.beforeEach(async (assert) => {
    assert.timeout(TEST_MAX_MS);
    await sim.whenIdle(TEST_MAX_MS);
    sim.reset();
  });

  QUnit.test('formatUsd is exact', (assert) => {
    assert.strictEqual(formatUsd(0n), '0');
    assert.strictEqual(formatUsd(2_500n), '0.0000025');
    assert.strictEqual(formatUsd(20n), '0.00000002');
    assert.strictEqual(formatUsd(1_000_000_000n), '1');
    assert.strictEqual(formatUsd(123_456_789_012n), '123.456789012');
    assert.strictEqual(formatUsd(-1_500_000_000n), '-1.5');
  });

  QUnit.test('GET /models lists exact price strings', async (assert) => {
    const res = await fetch(`${sim.url}/models`, { headers: authHeaders() });
    assert.strictEqual(res.status, 200);
    const body = (await res.json()) as Chunk;
    const pricing = new Map((body['data'] as Chunk[]).map((model) => [model['id'], model['pricing']]));
    assert.deepEqual(
      [pricing.get('openai/gpt-4o').prompt, pricing.get('openai/gpt-4o').completion],
      ['0.0000025', '0.00001'],
    );
    assert.deepEqual(
      [pricing.get('openai/gpt-4o-mini').prompt, pricing.get('openai/gpt-4o-mini').completion],
      ['0.00000015', '0.0000006'],
    );
    assert.deepEqual(
      [pricing.get('anthropic/claude-sonnet-4').prompt, pricing.get('anthropic/claude-sonnet-4').completion],
      ['0.000003', '0.000015'],
    );
    const llama = pricing.get('meta-llama/llama-3.1-8b-instruct');
    assert.deepEqual([llama.prompt, llama.completion, llama.request], ['0.00000002', '0.00000005', '0']);
    assert.strictEqual(pricing.get('perplexity/sonar').request, '0.005');
    const first = (body['data'] as Chunk[])[0]!;
    assert.strictEqual(typeof first['context_length'], 'number');
    assert.ok('max_completion_tokens' in first['top_provider']);
    for (const field of ['image', 'web_search', 'internal_reasoning', 'input_cache_read', 'input_cache_write']) {
      assert.strictEqual(typeof first['pricing'][field], 'string', field);
    }
  });

  QUnit.test('non-streaming: body, header and books agree to the nano-dollar', async (assert) => {
    const content = 'Exactly thirty-three characters!!';
    const res = await chat(sim, { model: 'openai/gpt-4o', messages: userMessages(content), user: 'alice' });
    assert.strictEqual(res.status, 200);
    const body = (await res.json()) as Chunk;
    const record = only(sim);
    assert.strictEqual(res.headers.get('x-generation-id'), record.id);
    assert.strictEqual(body['id'], record.id);
    assert.true(record.id.startsWith('gen-'));
    assert.strictEqual(body['object'], 'chat.completion');
    assert.strictEqual(body['provider'], 'OpenAI');
    assert.strictEqual(body['choices'][0].message.content, completionText(8));
    assert.strictEqual(body['choices'][0].finish_reason, 'stop');
    const price = await pricesOf(sim, 'openai/gpt-4o');
    const expectedNano = 9n * price.prompt + 8n * price.completion; // ceil(33 / 4) = 9
    assert.strictEqual(record.costNano, expectedNano);
    assert.deepEqual(
      [body['usage'].prompt_tokens, body['usage'].completion_tokens, body['usage'].total_tokens],
      [9, 8, 17],
    );
    assert.strictEqual(BigInt(Math.round(body['usage'].cost * 1e9)), expectedNano);
    assert.strictEqual(body['usage'].cost, Number(formatUsd(expectedNano)));
    assert.strictEqual(body['usage'].is_byok, false);
    assert.strictEqual(body['usage'].cost_details.upstream_inference_cost, null);
    assert.strictEqual(record.user, 'alice');
    assert.strictEqual(record.state, 'done');
    assert.strictEqual(record.stream, false);
    assert.true(record.endedAtMs! >= record.startedAtMs);
    assert.strictEqual(sim.billedNano({ user: 'alice' }), expectedNano);
    assert.strictEqual(sim.billedNano({ user: 'bob' }), 0n);
  });

  QUnit.test('text content parts count, defaults and fallback models apply', async (assert) => {
    const messages = [{ role: 'user', content: [{ type: 'text', text: '12345678' }, { type: 'image_url' }] }];
    await (await chat(sim, { messages, sim: { completion_tokens: 1 } })).json();
    await (await chat(sim, { models: ['anthropic/claude-sonnet-4', 'openai/gpt-4o'], messages })).json();
    const [first, second] = sim.generations();
    assert.strictEqual(first!.model, 'openai/gpt-4o-mini');
    assert.strictEqual(first!.promptTokens, 2);
    assert.strictEqual(first!.costNano, 2n * 150n + 1n * 600n);
    assert.strictEqual(second!.model, 'anthropic/claude-sonnet-4');
  });

  QUnit.test('per-request price is billed', async (assert) => {
    const res = await chat(sim, { model: 'perplexity/sonar', messages: userMessages('abcd'), sim: { completion_tokens: 2 } });
    const body = (await res.json()) as Chunk;
    assert.strictEqual(only(sim).costNano, 1_000n + 2n * 1_000n + 5_000_000n);
    assert.strictEqual(body['usage'].cost, 0.005003);
  });

  QUnit.test('streaming: comment first, chunks, finish, usage, [DONE]', async (assert) => {
    const res = await chat(sim, {
      model: 'meta-llama/llama-3.1-8b-instruct', messages: userMessages('abcdefgh'), stream: true,
      sim: { completion_tokens: 5 },
    });
    assert.strictEqual(res.status, 200);
    assert.true(res.headers.get('content-type')!.startsWith('text/event-stream'));
    assert.strictEqual(res.headers.get('cache-control'), 'no-cache');
    const { events, error } = await readSse(res);
    assert.strictEqual(error, null);
    const record = only(sim);
    assert.strictEqual(res.headers.get('x-generation-id'), record.id);
    assert.deepEqual(events[0], { kind: 'comment', text: 'OPENROUTER PROCESSING' });
    const data = events.slice(1);
    assert.strictEqual(data.length, 5 + 3);
    assert.strictEqual(data.map(contentOf).slice(0, 5).join(''), completionText(5));
    const first = jsonOf(data[0]);
    assert.strictEqual(first['object'], 'chat.completion.chunk');
    assert.strictEqual(first['id'], record.id);
    assert.strictEqual(first['choices'][0].delta.role, 'assistant');
    assert.strictEqual(first['choices'][0].finish_reason, null);
    const finish = jsonOf(data[5]);
    assert.strictEqual(finish['choices'][0].finish_reason, 'stop');
    assert.strictEqual(finish['choices'][0].delta.content, '');
    assert.strictEqual(finish['usage'], undefined);
    const usage = jsonOf(data[6]);
    assert.deepEqual(usage['choices'], []);
    assert.strictEqual(BigInt(Math.round(usage['usage'].cost * 1e9)), record.costNano);
    assert.strictEqual(record.costNano, 2n * 20n + 5n * 50n);
    assert.deepEqual(data[7], { kind: 'data', data: '[DONE]' });
    assert.strictEqual(record.completionTokens, 5);
    assert.strictEqual(record.finishReason, 'stop');
  });

  QUnit.test('streaming: keep-alive comments while waiting for the first token', async (assert) => {
    const res = await chat(sim, {
      messages: userMessages(), stream: true,
      sim: { latency_ms: 200, keepalive_ms: 40, completion_tokens: 2, comment_every_tokens: 1 },
    });
    const { events } = await readSse(res);
    const firstData = events.findIndex((event) => event.kind === 'data');
    assert.true(firstData >= 3, `${firstData} comments before the first token`);
    assert.true(events.slice(0, firstData).every((event) => event.kind === 'comment'));
    // comment_every_tokens: 1 puts a comment between the two token events.
    assert.strictEqual(events[firstData + 1]!.kind, 'comment');
    assert.strictEqual(events.filter((event) => contentOf(event) !== null).length, 2);
  });

  QUnit.test('streaming: usage on the finish chunk; max_tokens gives "length"', async (assert) => {
    const res = await chat(sim, {
      messages: userMessages(), stream: true, max_tokens: 3,
      sim: { completion_tokens: 10, usage_in_last_choice_chunk: true },
    });
    const { events } = await readSse(res);
    const data = events.filter((event) => event.kind === 'data');
    assert.strictEqual(data.length, 3 + 2);
    const finish = jsonOf(data[3]);
    assert.strictEqual(finish['choices'][0].finish_reason, 'length');
    assert.strictEqual(finish['usage'].completion_tokens, 3);
    assert.strictEqual(BigInt(Math.round(finish['usage'].cost * 1e9)), only(sim).costNano);
    assert.strictEqual(only(sim).finishReason, 'length');
  });

  QUnit.test('split_writes splits inside multibyte characters; stream decoding is intact', async (assert) => {
    const res = await chat(sim, {
      messages: userMessages(), stream: true, sim: { completion_tokens: 10, split_writes: true },
    });
    const { events, reads } = await readSse(res);
    assert.strictEqual(events.map(contentOf).filter((text) => text !== null).join(''), completionText(10));
    // Decoding each read on its own corrupts at least one character: the split is mid-character.
    const naive = reads.map((bytes) => new TextDecoder().decode(bytes)).join('');
    assert.true(naive.includes('\uFFFD'), 'some read ends inside a UTF-8 sequence');
  });

  QUnit.test('cancellation bills only the tokens written before the close', async (assert) => {
    const total = 200;
    const controller = new AbortController();
    const res = await chat(sim, {
      model: 'openai/gpt-4o', messages: userMessages('abcd'), stream: true, user: 'carol',
      sim: { completion_tokens: total, chunk_delay_ms: 10 },
    }, { signal: controller.signal });
    let received = 0;
    await readSse(res, (event) => {
      if (contentOf(event) !== null) received += 1;
      if (received === 5) {
        controller.abort();
        return true;
      }
      return false;
    });
    await sim.whenIdle(3_000);
    const record = only(sim);
    assert.true(record.cancelled);
    assert.strictEqual(record.finishReason, null);
    assert.true(record.completionTokens >= received, `billed ${record.completionTokens} >= received ${received}`);
    assert.true(record.completionTokens < total);
    assert.strictEqual(record.costNano, 1n * 2_500n + BigInt(record.completionTokens) * 10_000n);
    assert.strictEqual(sim.billedNano({ user: 'carol' }), record.costNano);
  });

  QUnit.test('cancellation before the first token bills nothing', async (assert) => {
    const controller = new AbortController();
    const res = await chat(sim, {
      messages: userMessages(), stream: true, sim: { latency_ms: 5_000 },
    }, { signal: controller.signal });
    await readSse(res, () => {
      controller.abort();
      return true;
    });
    await sim.whenIdle(2_000);
    const record = only(sim);
    assert.true(record.cancelled);
    assert.strictEqual(record.completionTokens, 0);
    assert.strictEqual(record.costNano, 0n);
  });

  QUnit.test('cancellable: false keeps generating after the client leaves and bills it all', async (assert) => {
    const controller = new AbortController();
    const res = await chat(sim, {
      messages: userMessages('abcd'), stream: true,
      sim: { completion_tokens: 20, chunk_delay_ms: 5, cancellable: false },
    }, { signal: controller.signal });
    await readSse(res, (event) => {
      if (contentOf(event) === null) return false;
      controller.abort();
      return true;
    });
    await sim.whenIdle(3_000);
    const record = only(sim);
    assert.false(record.cancelled);
    assert.strictEqual(record.completionTokens, 20);
    assert.strictEqual(record.finishReason, 'stop');
    assert.strictEqual(record.costNano, 150n + 20n * 600n);
  });

  QUnit.test('non-streaming is billed in full even when the client leaves', async (assert) => {
    const controller = new AbortController();
    const pending = chat(sim, {
      messages: userMessages('abcd'), sim: { latency_ms: 150, completion_tokens: 4 },
    }, { signal: controller.signal });
    await delay(30);
    controller.abort();
    await pending.catch(() => undefined); // aborted on purpose: the record below is the verdict
    await sim.whenIdle(3_000);
    const record = only(sim);
    assert.false(record.cancelled);
    assert.strictEqual(record.completionTokens, 4);
    assert.strictEqual(record.costNano, 150n + 4n * 600n);
  });

  QUnit.test('GET /generation: 404 while running and just after, then 200', async (assert) => {
    const res = await chat(sim, {
      model: 'anthropic/claude-sonnet-4', messages: userMessages('abcd'), stream: true,
      sim: { latency_ms: 150, completion_tokens: 3, lookup_404_ms: 200 },
    });
    const id = res.headers.get('x-generation-id')!;
    const lookup = (): Promise<Response> => fetch(`${sim.url}/generation?id=${id}`, { headers: authHeaders() });
    const whileRunning = await lookup();
    assert.strictEqual(whileRunning.status, 404);
    assert.deepEqual(await whileRunning.json(), { error: { code: 404, message: 'Generation not found' } });
    await readSse(res);
    assert.strictEqual((await lookup()).status, 404, 'still 404 right after the end');
    await delay(250);
    const found = await lookup();
    assert.strictEqual(found.status, 200);
    const { data } = (await found.json()) as Chunk;
    const record = only(sim);
    assert.strictEqual(data.id, id);
    assert.strictEqual(BigInt(Math.round(data.total_cost * 1e9)), record.costNano);
    assert.strictEqual(record.costNano, 3_000n + 3n * 15_000n);
    assert.deepEqual(
      [data.tokens_prompt, data.tokens_completion, data.streamed, data.cancelled, data.finish_reason, data.provider_name],
      [1, 3, true, false, 'stop', 'Anthropic'],
    );
    assert.true(data.latency >= 140, `latency ${data.latency}`);
    const unknown = await fetch(`${sim.url}/generation?id=gen-nope`, { headers: authHeaders() });
    assert.strictEqual(unknown.status, 404);
  });

  // The official @openrouter/sdk rejects a usage object whose cost_details lacks the prompt and
  // completions split, so every usage the simulator sends carries both, as numbers.
  QUnit.test('usage.cost_details always carries the prompt and completions split as numbers', async (assert) => {
    const bodies: Chunk[] = [];
    const json = await chat(sim, { model: 'openai/gpt-4o', messages: userMessages('abcd'), sim: { completion_tokens: 3 } });
    bodies.push(((await json.json()) as Chunk)['usage']);
    const stream = await chat(sim, { model: 'openai/gpt-4o', messages: userMessages('abcd'), stream: true, sim: { completion_tokens: 3 } });
    const { events } = await readSse(stream);
    bodies.push(jsonOf(events.at(-2))['usage']);
    const mid = await chat(sim, { model: 'openai/gpt-4o', messages: userMessages('abcd'), stream: true, sim: { error_after_tokens: 0, usage_on_error: true } });
    bodies.push(jsonOf((await readSse(mid)).events.at(-1))['usage']);
    for (const [index, usage] of bodies.entries()) {
      const details = usage['cost_details'];
      assert.strictEqual(typeof details.upstream_inference_prompt_cost, 'number', `${index}: prompt cost is a number`);
      assert.strictEqual(typeof details.upstream_inference_completions_cost, 'number', `${index}: completions cost is a number`);
      assert.strictEqual(details.upstream_inference_cost, null, `${index}: null unless BYOK`);
    }
    assert.strictEqual(bodies[0]!['cost_details'].upstream_inference_prompt_cost, 0.0000025, '1 prompt token of gpt-4o');
    assert.strictEqual(bodies[0]!['cost_details'].upstream_inference_completions_cost, 0.00003, '3 completion tokens');
    assert.deepEqual([bodies[2]!['cost_details'].upstream_inference_prompt_cost, bodies[2]!['cost_details'].upstream_inference_completions_cost], [0, 0], 'nothing billed, nothing split');
  });

  QUnit.test('byok: cost is the fee only, the provider charge is upstream_inference_cost; books hold their sum', async (assert) => {
    const price = await pricesOf(sim, 'anthropic/claude-sonnet-4');
    const providerNano = 2n * price.prompt + 4n * price.completion; // 'abcdefgh' = 2 prompt tokens
    const feeNano = (providerNano * 5n + 99n) / 100n; // 5 %, rounded up to a nano
    const json = await chat(sim, { model: 'anthropic/claude-sonnet-4', messages: userMessages('abcdefgh'), user: 'byok', sim: { completion_tokens: 4, byok: true } });
    const usage = ((await json.json()) as Chunk)['usage'];
    assert.strictEqual(usage.is_byok, true);
    assert.strictEqual(BigInt(Math.round(usage.cost * 1e9)), feeNano, 'cost = the fee');
    assert.strictEqual(BigInt(Math.round(usage.cost_details.upstream_inference_cost * 1e9)), providerNano, 'the provider charge');
    assert.strictEqual(BigInt(Math.round(usage.cost_details.upstream_inference_prompt_cost * 1e9)), 2n * price.prompt);
    assert.strictEqual(BigInt(Math.round(usage.cost_details.upstream_inference_completions_cost * 1e9)), 4n * price.completion);
    const stream = await chat(sim, { model: 'anthropic/claude-sonnet-4', messages: userMessages('abcdefgh'), user: 'byok', stream: true, sim: { completion_tokens: 4, byok: true } });
    const { events } = await readSse(stream);
    const streamed = jsonOf(events.at(-2));
    assert.strictEqual(streamed['usage'].is_byok, true);
    assert.strictEqual(streamed['usage'].cost, usage.cost);
    assert.strictEqual(streamed['usage'].cost_details.upstream_inference_cost, usage.cost_details.upstream_inference_cost);
    const [first, second] = sim.generations();
    for (const record of [first!, second!]) {
      assert.strictEqual(record.isByok, true);
      assert.strictEqual(record.upstreamInferenceNano, providerNano);
      assert.strictEqual(record.costNano, providerNano + feeNano, 'the books: what the call cost in all');
    }
    assert.strictEqual(sim.billedNano({ user: 'byok' }), 2n * (providerNano + feeNano));
    await delay(150);
    const found = await fetch(`${sim.url}/generation?id=${first!.id}`, { headers: authHeaders() });
    const { data } = (await found.json()) as Chunk;
    assert.strictEqual(data.is_byok, true);
    assert.strictEqual(BigInt(Math.round(data.total_cost * 1e9)), feeNano, '/generation total_cost = the fee');
    assert.strictEqual(BigInt(Math.round(data.upstream_inference_cost * 1e9)), providerNano, '/generation upstream_inference_cost');
    const plain = await fetch(`${sim.url}/generation?id=${first!.id}`.replace(first!.id, second!.id), { headers: authHeaders() });
    assert.strictEqual(((await plain.json()) as Chunk)['data'].model, 'anthropic/claude-sonnet-4');
    const control = (await (await fetch(`${sim.url}/__sim/generations`)).json()) as Chunk;
    assert.strictEqual(control['data'][0].upstreamInferenceNano, providerNano.toString(), 'control JSON carries it as text');
    const bad = await chat(sim, { messages: userMessages(), sim: { byok: 'yes' } });
    assert.strictEqual(bad.status, 400);
  });

  QUnit.test('the served model and provider are in every chunk and body, also with only `models`', async (assert) => {
    const json = await chat(sim, { models: ['meta-llama/llama-3.1-8b-instruct', 'openai/gpt-4o'], messages: userMessages() });
    const body = (await json.json()) as Chunk;
    assert.deepEqual([body['model'], body['provider']], ['meta-llama/llama-3.1-8b-instruct', 'DeepInfra']);
    const stream = await chat(sim, { models: ['perplexity/sonar'], messages: userMessages(), stream: true, sim: { completion_tokens: 2 } });
    const data = (await readSse(stream)).events.filter((e) => e.kind === 'data' && e.data !== '[DONE]');
    assert.true(data.length >= 3);
    for (const event of data) assert.deepEqual([jsonOf(event)['model'], jsonOf(event)['provider']], ['perplexity/sonar', 'Perplexity']);
  });

  QUnit.test('error_before: HTTP status, Retry-After, metadata, nothing billed', async (assert) => {
    const metadata = { limit_source: 'openrouter_in_flight_budget' };
    const res = await chat(sim, {
      messages: userMessages(), stream: true,
      sim: { error_before: { status: 402, message: 'In-flight budget exceeded', metadata, retry_after_s: 2 } },
    });
    assert.strictEqual(res.status, 402);
    assert.strictEqual(res.headers.get('retry-after'), '2');
    assert.deepEqual(await res.json(), { error: { code: 402, message: 'In-flight budget exceeded', metadata } });
    const record = only(sim);
    assert.strictEqual(res.headers.get('x-generation-id'), record.id);
    assert.strictEqual(record.costNano, 0n);
    assert.strictEqual(record.finishReason, 'error');
    assert.strictEqual(sim.billedNano(), 0n);
  });

  QUnit.test('error_after_tokens: mid-stream error event, n tokens billed', async (assert) => {
    const res = await chat(sim, {
      messages: userMessages('abcd'), stream: true, sim: { error_after_tokens: 3 },
    });
    assert.strictEqual(res.status, 200);
    const { events, error } = await readSse(res);
    assert.strictEqual(error, null);
    const data = events.filter((event) => event.kind === 'data');
    assert.strictEqual(data.length, 4, 'three tokens, then the error, and no [DONE]');
    const failure = jsonOf(data[3]);
    assert.deepEqual(failure['error'], { code: 502, message: 'Provider returned error' });
    assert.strictEqual(failure['choices'][0].finish_reason, 'error');
    assert.strictEqual(failure['usage'], undefined);
    const record = only(sim);
    assert.strictEqual(record.completionTokens, 3);
    assert.strictEqual(record.finishReason, 'error');
    assert.strictEqual(record.costNano, 150n + 3n * 600n);
  });

  QUnit.test('error_after_tokens with usage_on_error, and after 0 tokens (free)', async (assert) => {
    const withUsage = await chat(sim, {
      messages: userMessages('abcd'), stream: true, sim: { error_after_tokens: 2, usage_on_error: true },
    });
    const failure = jsonOf((await readSse(withUsage)).events.filter((event) => event.kind === 'data').at(-1));
    assert.strictEqual(failure['usage'].completion_tokens, 2);
    assert.strictEqual(BigInt(Math.round(failure['usage'].cost * 1e9)), 150n + 2n * 600n);
    const none = await chat(sim, { messages: userMessages(), stream: true, sim: { error_after_tokens: 0 } });
    await readSse(none);
    const [, second] = sim.generations();
    assert.strictEqual(second!.costNano, 0n);
    assert.strictEqual(second!.finishReason, 'error');
  });

  QUnit.test('error_after_tokens non-streaming: 200 with error and partial content', async (assert) => {
    const res = await chat(sim, { messages: userMessages('abcd'), sim: { error_after_tokens: 2 } });
    assert.strictEqual(res.status, 200);
    const body = (await res.json()) as Chunk;
    assert.strictEqual(body['error'].code, 502);
    assert.strictEqual(body['choices'][0].finish_reason, 'error');
    assert.strictEqual(body['choices'][0].message.content, completionText(2));
    assert.strictEqual(body['usage'], undefined);
    assert.strictEqual(only(sim).costNano, 150n + 2n * 600n);
  });

  QUnit.test('cut_after_tokens: the body breaks off, n tokens billed', async (assert) => {
    const res = await chat(sim, {
      messages: userMessages('abcd'), stream: true, sim: { cut_after_tokens: 2, completion_tokens: 6 },
    });
    const { events, error } = await readSse(res);
    assert.notStrictEqual(error, null, 'the reader sees a premature close');
    assert.strictEqual(events.filter((event) => contentOf(event) !== null).length, 2);
    assert.false(events.some((event) => event.kind === 'data' && event.data === '[DONE]'));
    await sim.whenIdle(2_000);
    const record = only(sim);
    assert.strictEqual(record.completionTokens, 2);
    assert.strictEqual(record.finishReason, null);
    assert.false(record.cancelled);
    assert.strictEqual(record.costNano, 150n + 2n * 600n);
  });

  QUnit.test('omit_usage: [DONE] without usage; non-streaming usage without cost', async (assert) => {
    const res = await chat(sim, { messages: userMessages('abcd'), stream: true, sim: { omit_usage: true } });
    const { events } = await readSse(res);
    const data = events.filter((event) => event.kind === 'data');
    assert.deepEqual(data.at(-1), { kind: 'data', data: '[DONE]' });
    assert.false(data.slice(0, -1).some((event) => jsonOf(event)['usage'] !== undefined));
    const plain = (await (await chat(sim, { messages: userMessages('abcd'), sim: { omit_usage: true } })).json()) as Chunk;
    assert.strictEqual(plain['usage'].completion_tokens, 8);
    assert.false('cost' in plain['usage']);
    for (const record of sim.generations()) assert.strictEqual(record.costNano, 150n + 8n * 600n);
  });

  QUnit.test('apiKey: 401 without or with a wrong key; the log shows what arrived', async (assert) => {
    const missing = await fetch(`${sim.url}/models`);
    assert.strictEqual(missing.status, 401);
    assert.strictEqual(((await missing.json()) as Chunk)['error'].code, 401);
    const wrong = await chat(sim, { messages: userMessages(), user: 'dave' }, { headers: authHeaders('sk-user-key') });
    assert.strictEqual(wrong.status, 401);
    await wrong.body?.cancel();
    assert.strictEqual(sim.generations().length, 0);
    assert.deepEqual(
      sim.requestLog.map((entry) => [entry.method, entry.path, entry.authorization, entry.user]),
      [
        ['GET', '/api/v1/models', null, null],
        ['POST', '/api/v1/chat/completions', 'Bearer sk-user-key', 'dave'],
      ],
    );
  });

  QUnit.test('400s: unknown model, bad JSON, missing messages, bad steering; 404 route', async (assert) => {
    const unknown = await chat(sim, { model: 'acme/nope', messages: userMessages() });
    assert.strictEqual(unknown.status, 400);
    assert.deepEqual(await unknown.json(), { error: { code: 400, message: 'acme/nope is not a valid model ID' } });
    const badJson = await fetch(`${sim.url}/chat/completions`, { method: 'POST', headers: authHeaders(), body: '{"messages": [' });
    assert.strictEqual(badJson.status, 400);
    assert.strictEqual(((await badJson.json()) as Chunk)['error'].code, 400);
    assert.strictEqual((await (await chat(sim, { messages: [] })).json() as Chunk)['error'].code, 400);
    assert.strictEqual((await chat(sim, { model: 'openai/gpt-4o' })).status, 400);
    assert.strictEqual((await chat(sim, { messages: userMessages(), sim: { latency_ms: 'slow' } })).status, 400);
    const route = await fetch(`${sim.url}/nothing-here`, { headers: authHeaders() });
    assert.strictEqual(route.status, 404);
    assert.strictEqual(((await route.json()) as Chunk)['error'].code, 404);
    assert.strictEqual(sim.generations().length, 0);
  });

  QUnit.test('the /v1 prefix works and control routes serve the books over HTTP', async (assert) => {
    const origin = new URL(sim.url).origin;
    const res = await fetch(`${origin}/v1/chat/completions`, {
      method: 'POST', headers: authHeaders(), body: JSON.stringify({ messages: userMessages(), user: 'erin' }),
    });
    assert.strictEqual(res.status, 200);
    await res.json();
    const books = (await (await fetch(`${origin}/__sim/generations`)).json()) as Chunk;
    assert.strictEqual(books['data'].length, 1);
    assert.strictEqual(books['data'][0].costNano, only(sim).costNano.toString());
    assert.strictEqual(books['data'][0].user, 'erin');
    assert.strictEqual((await fetch(`${sim.url}/__sim/reset`, { method: 'POST' })).status, 200);
    assert.strictEqual(sim.generations().length, 0);
    assert.strictEqual(sim.requestLog.length, 0);
  });
});

QUnit.module('simulator defaults', () => {
  QUnit.test('simulator-wide defaults steer every request; a request overrides them', async (assert) => {
    assert.timeout(TEST_MAX_MS);
    const sim = await startSimulator({ defaults: { completion_tokens: 3 } });
    try {
      await (await chat(sim, { messages: userMessages() })).json();
      await (await chat(sim, { messages: userMessages(), sim: { completion_tokens: 1 } })).json();
      assert.deepEqual(sim.generations().map((record) => record.completionTokens), [3, 1]);
    } finally {
      await sim.close();
    }
  });

  QUnit.test('close() ends running streams at once', async (assert) => {
    assert.timeout(TEST_MAX_MS);
    const sim = await startSimulator();
    const res = await chat(sim, { messages: userMessages(), stream: true, sim: { latency_ms: 60_000 } });
    const started = performance.now();
    await sim.close();
    const { error } = await readSse(res);
    assert.true(performance.now() - started < 3_000);
    assert.notStrictEqual(error, null);
    assert.strictEqual(sim.generations()[0]!.state, 'done');
  });
});
