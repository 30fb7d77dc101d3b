// Absurd costs from the upstream (README, "Money"): tiny positive ones round to zero without
// throwing; a cost that is negative, past CALL_COST_MAX_USD or past what a bigint holds is
// not charged automatically but left `unresolved/cost_out_of_range` for an operator, and the
// client's response still finishes. A settle Postgres refuses for good is not retried forever.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { requests } from '@metergate/db';
import { ConfigError, loadConfig } from '@metergate/server';
import { ledgerUsageNano, startStack, type TestStack } from '@metergate/testkit';
import { assertNano, chat, messages, readSse, requestIdOf, requestRow, settledState } from './helpers.js';

/**
 * A stand-in upstream answering every completion with `cost` written verbatim as JSON number
 * text (the simulator only bills real prices). `/generation` reports the same cost.
 */
interface FakeUpstream { url: string; cost: string; withCost: boolean; close(): Promise<void> }

async function startFakeUpstream(): Promise<FakeUpstream> {
  let counter = 0;
  const state = { cost: '0', withCost: true };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const path = req.url ?? '';
      if (path.startsWith('/api/v1/models')) {
        // No prices: serialize mode holds these calls at HOLD_FALLBACK_USD.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"data":[]}');
        return;
      }
      if (path.startsWith('/api/v1/generation')) {
        const id = new URL(path, 'http://x').searchParams.get('id');
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`{"data":{"id":${JSON.stringify(id)},"total_cost":${state.cost},"tokens_prompt":3,"tokens_completion":2}}`);
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { stream?: boolean; model?: string };
      counter += 1;
      const id = `gen-fake-${counter}`;
      const usage = `{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5${state.withCost ? `,"cost":${state.cost}` : ''}}`;
      if (body.stream === true) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: {"id":"${id}","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}\n\n`);
        res.write(`data: {"id":"${id}","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":${usage}}\n\n`);
        res.end('data: [DONE]\n\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-generation-id': id });
      res.end(`{"id":"${id}","object":"chat.completion","model":"${body.model ?? 'm'}","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":${usage}}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/api/v1`,
    get cost() { return state.cost; },
    set cost(value: string) { state.cost = value; },
    get withCost() { return state.withCost; },
    set withCost(value: boolean) { state.withCost = value; },
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/** One call; returns its request id once the client has the whole response. */
async function call(assert: Assert, stack: TestStack, key: string, stream: boolean): Promise<string> {
  const response = await chat(stack, key, { model: 'openai/gpt-4o', stream, messages: messages() });
  const requestId = requestIdOf(response);
  assert.strictEqual(response.status, 200, 'the client gets its answer');
  if (stream) {
    const read = await readSse(response);
    assert.strictEqual(read.error, null, 'the stream was not cut');
    assert.true(read.text.includes('data: [DONE]'), 'the stream finished with [DONE]');
  } else {
    const body = JSON.parse(await response.text()) as { choices?: unknown[] };
    assert.strictEqual(body.choices?.length, 1, 'the whole JSON body arrived');
  }
  return requestId;
}

QUnit.module('costs out of range', (hooks) => {
  let stack: TestStack;
  let fake: FakeUpstream;
  hooks.before(async () => {
    fake = await startFakeUpstream();
    // The stand-in lists no prices, so each call holds HOLD_FALLBACK_USD; an unresolved call
    // keeps its hold (README, Holds), so a small fallback lets one user make all these calls.
    stack = await startStack({ env: { OPENROUTER_BASE_URL: fake.url, HOLD_FALLBACK_USD: '0.01' } });
  });
  hooks.after(async () => {
    await stack.close();
    await fake.close();
  });

  QUnit.test('a positive cost below half a nano-dollar (1e-41, 5e-324, 4.9e-10) is settled as 0, without throwing', async (assert) => {
    const key = await stack.createUser('tiny');
    for (const cost of ['1e-41', '5e-324', '4.9e-10']) {
      fake.cost = cost;
      for (const stream of [false, true]) {
        const requestId = await call(assert, stack, key, stream);
        assert.strictEqual(await settledState(stack, requestId), 'settled', `${cost} stream=${String(stream)}: settled`);
        assert.strictEqual((await requestRow(stack, requestId))?.cost_nano, '0', `${cost}: rounds to 0`);
      }
    }
    fake.cost = '5e-10';
    const halfUp = await call(assert, stack, key, false);
    assert.strictEqual(await settledState(stack, halfUp), 'settled');
    assert.strictEqual((await requestRow(stack, halfUp))?.cost_nano, '1', '5e-10 rounds half away from zero to 1 nano');
    assertNano(assert, await ledgerUsageNano(stack.db.pool, 'tiny'), 1n);
  });

  QUnit.test('negative, over CALL_COST_MAX_USD (default 1000), or past bigint: unresolved cost_out_of_range, nothing charged, response finished', async (assert) => {
    const key = await stack.createUser('absurd');
    for (const cost of ['-0.5', '1000.000000001', '20000000000', '1e300', '1.7976931348623157e308']) {
      fake.cost = cost;
      for (const stream of [false, true]) {
        const requestId = await call(assert, stack, key, stream);
        assert.strictEqual(await settledState(stack, requestId), 'unresolved', `${cost} stream=${String(stream)}: unresolved`);
        const reason = (await requestRow(stack, requestId))?.reason ?? '';
        assert.true(reason.startsWith('cost_out_of_range'), `reason ${reason}`);
        assert.strictEqual(reason, `cost_out_of_range:${String(Number(cost))}`, 'the raw value is recorded');
      }
    }
    assertNano(assert, await ledgerUsageNano(stack.db.pool, 'absurd'), 0n, 'nothing charged automatically');
    fake.cost = '1000';
    const atMax = await call(assert, stack, key, false);
    assert.strictEqual(await settledState(stack, atMax), 'settled', 'exactly the maximum is charged');
    assertNano(assert, await ledgerUsageNano(stack.db.pool, 'absurd'), 1_000_000_000_000n);
  });

  QUnit.test('an out-of-range cost found by the /generation lookup is unresolved too', async (assert) => {
    const key = await stack.createUser('lookup');
    fake.withCost = false;
    fake.cost = '1e300';
    try {
      const requestId = await call(assert, stack, key, false);
      assert.strictEqual(await settledState(stack, requestId), 'unresolved');
      assert.true(((await requestRow(stack, requestId))?.reason ?? '').startsWith('cost_out_of_range'));
    } finally {
      fake.withCost = true;
    }
    assertNano(assert, await ledgerUsageNano(stack.db.pool, 'lookup'), 0n);
  });

  QUnit.test('a settle Postgres refuses for good (22003 numeric out of range) is marked unresolved, not retried forever', async (assert) => {
    await stack.createUser('overflow');
    assert.strictEqual((await stack.admin('PUT', '/admin/users/overflow/pricing', { multiplier: '2' })).status, 200);
    const requestId = crypto.randomUUID();
    assert.true((await requests.admitRequest(stack.db.pool, {
      id: requestId, userId: 'overflow', replicaId: stack.runtime.services.config.replicaId, model: 'm', stream: false,
    }, { minBalanceNano: 0n, upstreamHoldNano: 0n, holdCompletionTokens: null })).admitted);
    const settler = stack.runtime.services.settler;
    // Within a bigint, but twice it (the charge at multiplier 2) is not.
    const result = await settler.settle({
      requestId, userId: 'overflow', generationId: 'gen-overflow',
      cost: { costNano: 5_000_000_000_000_000_000n, promptTokens: null, completionTokens: null, servedModel: null, provider: null, isByok: null },
    });
    assert.notStrictEqual(result, 'deferred', `not deferred for retries (${result})`);
    assert.strictEqual(settler.pendingRetries, 0, 'nothing left retrying');
    const row = await requestRow(stack, requestId);
    assert.strictEqual(row?.state, 'unresolved');
    assert.true((row?.reason ?? '').includes('22003'), `the reason names the SQLSTATE: ${row?.reason}`);
    assertNano(assert, await ledgerUsageNano(stack.db.pool, 'overflow'), 0n);
  });

  QUnit.test('CALL_COST_MAX_USD is validated: above 0, at most 1,000,000 USD (so every charge fits a bigint)', (assert) => {
    const base = { NODE_ENV: 'test' };
    assert.strictEqual(loadConfig(base).callCostMaxNano.toString(), '1000000000000', 'default 1000 USD');
    assert.strictEqual(loadConfig({ ...base, CALL_COST_MAX_USD: '2.5' }).callCostMaxNano.toString(), '2500000000');
    assert.strictEqual(loadConfig({ ...base, CALL_COST_MAX_USD: '1000000' }).callCostMaxNano.toString(), '1000000000000000');
    for (const bad of ['0', '-1', '1000000.000000001', 'lots']) {
      assert.throws(() => loadConfig({ ...base, CALL_COST_MAX_USD: bad }), ConfigError, bad);
    }
  });
});
