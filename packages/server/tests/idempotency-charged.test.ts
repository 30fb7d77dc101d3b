// Idempotency-Key after attempts that may have been charged (hardening item 8): the upstream
// started a generation (it answered 200 with X-Generation-Id, or the connection broke after the
// request was sent), then the call failed. The client gets a 5xx, but the key must not be
// released: a retry with it would run, and be charged, a second time.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ledgerUsageNano, startStack, type TestStack } from '@metergate/testkit';
import { assertBooks, assertNano, chat, messages, requestIdOf, requestRow, settledState, type Body } from './helpers.js';

/** POSTs to /chat/completions the proxy sent to the simulator for `user`. */
function chatCalls(stack: TestStack, user: string): number {
  return stack.sim.requestLog.filter((entry) => entry.method === 'POST' && entry.path.endsWith('/chat/completions') && entry.user === user).length;
}

/**
 * An HTTP hop between the proxy and the simulator that passes everything through, except that
 * a non-streaming chat completion's body is cut half-way after its 200 and headers: the
 * generation ran and was billed, its id was announced, then the connection broke.
 */
async function startBodyBreaker(): Promise<{ url: string; target: { origin: string }; close(): Promise<void> }> {
  const target = { origin: '' };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => void (async () => {
      const headers: Record<string, string> = {};
      for (const name of ['authorization', 'content-type', 'accept']) {
        const value = req.headers[name];
        if (typeof value === 'string') headers[name] = value;
      }
      const body = chunks.length === 0 ? undefined : Buffer.concat(chunks);
      const upstream = await fetch(`${target.origin}${req.url ?? '/'}`, { method: req.method, headers, body, signal: AbortSignal.timeout(10_000) });
      const bytes = Buffer.from(await upstream.arrayBuffer());
      const out: Record<string, string> = { 'content-type': upstream.headers.get('content-type') ?? 'application/json', 'content-length': String(bytes.length) };
      const generationId = upstream.headers.get('x-generation-id');
      if (generationId !== null) out['x-generation-id'] = generationId;
      const breaks = req.method === 'POST' && req.url?.endsWith('/chat/completions') === true && upstream.status === 200 &&
        !(JSON.parse(body?.toString('utf8') ?? '{}') as { stream?: boolean }).stream;
      res.writeHead(upstream.status, out);
      if (!breaks) {
        res.end(bytes);
        return;
      }
      res.write(bytes.subarray(0, Math.floor(bytes.length / 2)));
      setTimeout(() => res.socket?.destroy(), 20);
    })().catch(() => res.destroy()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/api/v1`, target,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

async function replayOf(stack: TestStack, key: string, body: Body, idempotencyKey: string): Promise<{ status: number; replayed: string | null; text: string }> {
  const response = await chat(stack, key, body, { headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': idempotencyKey } });
  return { status: response.status, replayed: response.headers.get('idempotent-replayed'), text: await response.text() };
}

QUnit.module('idempotency: attempts that may have been charged keep their key', (hooks) => {
  let stack: TestStack;
  let breaker: Awaited<ReturnType<typeof startBodyBreaker>>;
  hooks.before(async () => {
    breaker = await startBodyBreaker();
    stack = await startStack({ env: { OPENROUTER_BASE_URL: breaker.url } });
    breaker.target.origin = new URL(stack.sim.url).origin;
  });
  hooks.after(async () => {
    await stack?.close();
    await breaker?.close();
  });

  QUnit.test('200 with X-Generation-Id, then the body breaks: the client gets 502, the cost is settled from the lookup, a retry is not run again', async (assert) => {
    const user = 'idem-body-broke';
    const key = await stack.createUser(user);
    const body: Body = { model: 'openai/gpt-4o', stream: false, messages: messages(), sim: { completion_tokens: 12 } };
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': 'broken-body' };
    const first = await chat(stack, key, body, { headers });
    const firstText = await first.text();
    assert.strictEqual(first.status, 502, `the first attempt fails: ${firstText}`);
    assert.strictEqual(await settledState(stack, requestIdOf(first)), 'settled', 'its cost was found by id and settled');
    assert.strictEqual(chatCalls(stack, user), 1, 'one upstream call so far');

    const retry = await replayOf(stack, key, body, 'broken-body');
    assert.strictEqual(retry.replayed, 'true', `the retry is answered from the key, not run: ${retry.status} ${retry.text}`);
    assert.true(retry.status >= 500, 'with the stored error');
    assert.true(retry.text.includes('may have been charged'), 'saying the first attempt may have been charged');
    assert.strictEqual(chatCalls(stack, user), 1, 'still one upstream call: one generation, one charge');
    await assertBooks(assert, stack, user);
  });

  QUnit.test('the upstream connection breaks after the request was sent (no headers): unresolved, and a retry is not run again', async (assert) => {
    const user = 'idem-no-headers';
    const key = await stack.createUser(user);
    // The simulator bills 3 tokens, then closes the connection without answering.
    const body: Body = { model: 'openai/gpt-4o', stream: false, messages: messages(), sim: { completion_tokens: 10, cut_after_tokens: 3 } };
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': 'no-headers' };
    const first = await chat(stack, key, body, { headers });
    const firstText = await first.text();
    assert.strictEqual(first.status, 502, `the first attempt fails: ${firstText}`);
    const row = await requestRow(stack, requestIdOf(first));
    assert.strictEqual(row?.state, 'unresolved', 'no id to look up: left for an operator');

    const retry = await replayOf(stack, key, body, 'no-headers');
    assert.strictEqual(retry.replayed, 'true', `the retry is answered from the key, not run: ${retry.status} ${retry.text}`);
    assert.true(retry.text.includes('may have been charged'), 'saying the first attempt may have been charged');
    assert.strictEqual(chatCalls(stack, user), 1, 'one upstream call: the upstream billed it once');
    await stack.sim.whenIdle();
    assert.true(stack.sim.billedNano({ user }) > 0n, 'the upstream did bill the broken call (an operator settles it)');
    assertNano(assert, await ledgerUsageNano(stack.db.pool, user), 0n, 'nothing charged automatically (unresolved)');
  });

  QUnit.test('an upstream error before any output still releases the key (nothing was charged)', async (assert) => {
    const user = 'idem-still-released';
    const key = await stack.createUser(user);
    const body: Body = { model: 'openai/gpt-4o', stream: false, messages: messages(), sim: { error_before: { status: 503, message: 'no provider' } } };
    const first = await replayOf(stack, key, body, 'released');
    assert.strictEqual(first.status, 503);
    const second = await replayOf(stack, key, body, 'released');
    assert.strictEqual(second.status, 503);
    assert.strictEqual(second.replayed, null, 'the retry ran again');
    assert.strictEqual(chatCalls(stack, user), 2, 'two upstream calls');
    await assertBooks(assert, stack, user);
  });
});
