// Streaming chat completions through the proxy: relayed byte for byte as they arrive, billed
// exactly what the simulator billed, and a client that leaves aborts the upstream at once.
import { usdNumberToNano } from '@metergate/db';
import { startStack, type TestStack } from '@metergate/testkit';
import {
  asForwarded, assertBooks, assertNano, chat, contentEvents, directChat, generation, messages, normalize, readSse, requestIdOf,
  requestRow, settledState, sleep, type Body,
} from './helpers.js';

const CASES: Array<{ name: string; model: string; sim: Body }> = [
  { name: 'plain', model: 'openai/gpt-4o', sim: {} },
  { name: 'per-request price', model: 'perplexity/sonar', sim: { completion_tokens: 5 } },
  { name: 'split writes inside multibyte characters', model: 'anthropic/claude-sonnet-4', sim: { split_writes: true, completion_tokens: 12 } },
  { name: 'comments between tokens', model: 'meta-llama/llama-3.1-8b-instruct', sim: { comment_every_tokens: 2, completion_tokens: 7 } },
  { name: 'usage on the last choice chunk', model: 'openai/gpt-4o-mini', sim: { usage_in_last_choice_chunk: true } },
  { name: 'all at once', model: 'perplexity/sonar', sim: { split_writes: true, comment_every_tokens: 3, usage_in_last_choice_chunk: true, completion_tokens: 30 } },
];

QUnit.module('billing: streaming', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  CASES.forEach((testCase, index) => {
    QUnit.test(`${testCase.name} (${testCase.model}): relayed as the upstream sent it and billed exactly`, async (assert) => {
      const user = `stream-${index}`;
      const key = await stack.createUser(user);
      const body: Body = { model: testCase.model, stream: true, messages: messages(`Case ${testCase.name}: héllo 🙂`), sim: testCase.sim };
      const response = await chat(stack, key, body);
      assert.strictEqual(response.status, 200);
      assert.true((response.headers.get('content-type') ?? '').startsWith('text/event-stream'), 'SSE content type');
      const generationId = response.headers.get('x-generation-id');
      assert.true(generationId !== null && generationId.startsWith('gen-'), 'X-Generation-Id relayed');
      const read = await readSse(response);
      assert.strictEqual(read.error, null, 'the stream ended cleanly');
      assert.strictEqual(read.events.at(-1), 'data: [DONE]', '[DONE] is the last event');
      assert.true(read.text.endsWith('data: [DONE]\n\n'), 'nothing after [DONE]');

      // The same plan straight from the simulator: the relayed bytes must be the same events,
      // comments included, differing only in the generation id and timestamp.
      const direct = await directChat(stack, asForwarded(body, `direct-${user}`));
      const directText = await direct.text();
      assert.strictEqual(normalize(read.text, generationId!), normalize(directText, direct.headers.get('x-generation-id')!),
        'relayed event sequence equals what the simulator sends');
      const comments = read.events.filter((event) => event.startsWith(':')).length;
      const expectedComments = 1 + (typeof testCase.sim.comment_every_tokens === 'number'
        ? Math.floor(((testCase.sim.completion_tokens as number) - 1) / testCase.sim.comment_every_tokens) : 0);
      assert.strictEqual(comments, expectedComments, 'every comment kept');

      const record = generation(stack, generationId!);
      assert.strictEqual(record.user, user, 'upstream saw the Metergate user');
      const usageEvent = read.events.filter((event) => event.includes('"usage"')).at(-1)!;
      const cost = (JSON.parse(usageEvent.slice(5)) as { usage: { cost: number } }).usage.cost;
      assertNano(assert, usdNumberToNano(cost), record.costNano, 'usage.cost relayed untouched');
      if (testCase.model === 'perplexity/sonar') assert.true(record.costNano >= 5_000_000n, 'the request price is part of the cost');
      const billed = await assertBooks(assert, stack, user);
      assert.true(billed > 0n, 'something was billed');
      assert.strictEqual((await requestRow(stack, requestIdOf(response)))?.state, 'settled', 'request settled');
    });
  });

  QUnit.test('the first chunk is forwarded at once, not when the stream ends', async (assert) => {
    const key = await stack.createUser('first-byte');
    const started = Date.now();
    const response = await chat(stack, key, { model: 'openai/gpt-4o', stream: true, messages: messages(), sim: { chunk_delay_ms: 100, completion_tokens: 10 } });
    const read = await readSse(response, started);
    const events = read.events;
    const firstContent = events.indexOf(contentEvents(events)[0]!);
    assert.true(firstContent >= 0, 'content arrived');
    const firstAtMs = read.atMs[firstContent]!;
    const endAtMs = read.atMs.at(-1)!;
    assert.true(firstAtMs < 400, `first token after ${firstAtMs} ms`);
    assert.true(endAtMs >= 850, `stream ended after ${endAtMs} ms (9 delays of 100 ms)`);
    assert.true(endAtMs - firstAtMs >= 700, 'tokens arrived spread over the stream, not in one burst at the end');
    // Each token arrives as its own read roughly 100 ms apart.
    const contentTimes = contentEvents(events).map((event) => read.atMs[events.indexOf(event)]!);
    assert.true(contentTimes.at(-1)! - contentTimes[0]! >= 700, `tokens spread: ${contentTimes.join(',')}`);
    await assertBooks(assert, stack, 'first-byte');
  });

  QUnit.test('a client that disconnects mid-stream aborts the upstream at once and is billed the partial generation', async (assert) => {
    const user = 'leaver';
    const key = await stack.createUser(user);
    const abort = new AbortController();
    const tokens = 40;
    const delayMs = 100;
    const response = await chat(stack, key, { model: 'openai/gpt-4o', stream: true, messages: messages(), sim: { chunk_delay_ms: delayMs, completion_tokens: tokens } }, { signal: abort.signal });
    assert.strictEqual(response.status, 200);
    const requestId = requestIdOf(response);
    const generationId = response.headers.get('x-generation-id')!;
    const read = await readSse(response, Date.now(), (events) => contentEvents(events).length >= 3);
    abort.abort();
    assert.strictEqual(contentEvents(read.events).length, 3, 'read three tokens, then left');
    await stack.sim.whenIdle(5_000);
    const record = generation(stack, generationId);
    assert.true(record.cancelled, 'the simulator saw the generation cancelled');
    const lastedMs = record.endedAtMs! - record.startedAtMs;
    assert.true(lastedMs < (tokens * delayMs) / 2, `upstream stopped after ${Math.round(lastedMs)} ms (natural end: ${tokens * delayMs} ms)`);
    assert.true(record.completionTokens >= 3 && record.completionTokens < tokens, `billed ${record.completionTokens} tokens of ${tokens}`);
    assert.true(record.costNano > 0n, 'the partial generation costs something');
    await assertBooks(assert, stack, user);
    assert.strictEqual(await settledState(stack, requestId), 'settled');
    assert.strictEqual((await requestRow(stack, requestId))?.cost_nano, record.costNano.toString(), 'the request row holds the partial cost');
  });

  QUnit.test('a client that leaves before the first token aborts the silent upstream at once; nothing is billed', async (assert) => {
    const user = 'early-leaver';
    const key = await stack.createUser(user);
    const abort = new AbortController();
    const latencyMs = 3_000;
    const response = await chat(stack, key, { model: 'openai/gpt-4o', stream: true, messages: messages(), sim: { latency_ms: latencyMs } }, { signal: abort.signal });
    assert.strictEqual(response.status, 200);
    const requestId = requestIdOf(response);
    const generationId = response.headers.get('x-generation-id')!;
    // The upstream's first comment arrives at once; then it is silent until the first token,
    // so only the client's close itself can tell the proxy to abort.
    const read = await readSse(response, Date.now(), (events) => events.length >= 1);
    assert.true(read.events[0]?.startsWith(':'), 'the keep-alive comment was relayed at once');
    abort.abort();
    await stack.sim.whenIdle(5_000);
    const record = generation(stack, generationId);
    assert.true(record.cancelled, 'cancelled upstream');
    const lastedMs = record.endedAtMs! - record.startedAtMs;
    assert.true(lastedMs < latencyMs / 3, `upstream stopped after ${Math.round(lastedMs)} ms (first token due at ${latencyMs} ms)`);
    assert.strictEqual(record.completionTokens, 0);
    assertNano(assert, record.costNano, 0n, 'no output, no charge');
    await assertBooks(assert, stack, user);
    assert.strictEqual(await settledState(stack, requestId), 'settled', 'settled (at zero) from the lookup');
  });

  QUnit.test('the /api/v1 alias streams and bills the same way', async (assert) => {
    const key = await stack.createUser('alias-stream');
    const response = await chat(stack, key, { model: 'openai/gpt-4o-mini', stream: true, messages: messages() }, { path: '/api/v1/chat/completions' });
    assert.strictEqual(response.status, 200);
    const read = await readSse(response);
    assert.strictEqual(read.events.at(-1), 'data: [DONE]');
    assert.true(contentEvents(read.events).length > 0);
    await assertBooks(assert, stack, 'alias-stream');
  });
});

QUnit.module('billing: streaming to a slow reader', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('backpressure: a slow reader slows the upstream down, gets every byte, and nothing leaks', async (assert) => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => { warnings.push(`${warning.name}: ${warning.message}`); };
    process.on('warning', onWarning);
    try {
      const key = await stack.createUser('slow-reader');
      const tokens = 100_000;
      const now = () => performance.timeOrigin + performance.now(); // the simulator's clock
      const started = now();
      const response = await chat(stack, key, { model: 'openai/gpt-4o-mini', stream: true, messages: messages(), sim: { completion_tokens: tokens } });
      const generationId = response.headers.get('x-generation-id')!;
      const reader = response.body!.getReader();
      let bytes = 0;
      let tail = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        bytes += value.length;
        tail = (tail + Buffer.from(value).toString('latin1')).slice(-64);
        await sleep(2);
      }
      const finished = now();
      await stack.sim.whenIdle();
      const record = generation(stack, generationId);
      assert.strictEqual(record.completionTokens, tokens);
      assert.true(tail.endsWith('data: [DONE]\n\n'), 'the whole stream arrived');
      assert.true(bytes > 10_000_000, `${bytes} bytes`);
      // Nothing buffers the whole stream: the upstream could only finish writing once the slow
      // reader had taken most of it (what is left fits in the socket buffers on the way).
      const readerMs = finished - started;
      const upstreamMs = record.endedAtMs! - started;
      assert.true(upstreamMs > readerMs * 0.5, `upstream finished after ${Math.round(upstreamMs)} ms of the reader's ${Math.round(readerMs)} ms`);
      await assertBooks(assert, stack, 'slow-reader');
      assert.deepEqual(warnings.filter((w) => w.includes('MaxListeners')), [], 'no listener leak');
    } finally {
      process.off('warning', onWarning);
    }
  });
});
