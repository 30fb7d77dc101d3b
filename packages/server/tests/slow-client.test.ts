// A client that stops reading a stream (hardening item 9): the relay waits for the client's
// socket to drain, and without a deadline it would wait forever, holding the user's cost
// barrier (and its Postgres session) past every limit. With CLIENT_WRITE_STALL_MS_MAX the
// client is cut, the upstream aborted, and what the upstream billed is settled.
import { connect, type Socket } from 'node:net';
import { scrapeMetric, startStack, type TestStack } from '@metergate/testkit';
import { assertBooks, chat, messages, settledState, sleep, type Body } from './helpers.js';

const STALL_MS = 1_000;

/** Sends a streaming chat request on a raw socket and never reads the answer. */
async function stalledClient(stack: TestStack, key: string, body: Body): Promise<Socket> {
  const url = new URL(stack.url);
  const payload = JSON.stringify(body);
  const socket = connect({ host: url.hostname, port: Number(url.port) });
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  socket.on('error', () => undefined);
  socket.pause();
  socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: Bearer ${key}\r\n` +
    `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`);
  return socket;
}

async function requestIdsOf(stack: TestStack, user: string): Promise<string[]> {
  const result = await stack.db.pool.query<{ id: string }>('select id from requests where user_id = $1::text order by started_at', [user]);
  return result.rows.map((row) => row.id);
}

QUnit.module('slow clients', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => {
    stack = await startStack({ env: { CLIENT_WRITE_STALL_MS_MAX: String(STALL_MS), BARRIER_QUEUE_WAIT_MS: '8000' } });
  });
  hooks.after(async () => { await stack?.close(); });

  QUnit.test('a client that stops reading is cut after CLIENT_WRITE_STALL_MS_MAX: upstream aborted, billed part settled, the user not blocked', async (assert) => {
    const user = 'stalled';
    const key = await stack.createUser(user);
    // Far more bytes than the loopback socket buffers hold (~200 bytes a token).
    const socket = await stalledClient(stack, key, {
      model: 'openai/gpt-4o', stream: true, messages: messages(), sim: { completion_tokens: 100_000, chunk_delay_ms: 0 },
    });
    try {
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      const [requestId] = await (async () => {
        for (let i = 0; i < 100; i += 1) {
          const ids = await requestIdsOf(stack, user);
          if (ids.length > 0) return ids;
          await sleep(50);
        }
        return [];
      })();
      assert.strictEqual(typeof requestId, 'string', 'the stalled call was admitted');
      // The same user's next call waits behind the stalled one in the cost barrier.
      const started = Date.now();
      const next = await chat(stack, key, { model: 'openai/gpt-4o', stream: false, messages: messages(), sim: { completion_tokens: 3 } });
      const nextText = await next.text();
      assert.strictEqual(next.status, 200, `the user's next call ran once the stalled one was cut: ${nextText.slice(0, 200)}`);
      assert.true(Date.now() - started < STALL_MS + 6_000, 'within the stall limit (and a little), not after the barrier queue wait');
      assert.strictEqual(await settledState(stack, requestId!), 'settled', 'the stalled call was settled');
      // What the kernel still held is delivered, then the end of a connection the proxy closed.
      let tail = '';
      socket.on('data', (chunk: Buffer) => { tail = (tail + chunk.toString('latin1')).slice(-4_096); });
      socket.resume();
      const ended = await Promise.race([closed.then(() => true), sleep(10_000).then(() => false)]);
      assert.true(ended, 'the proxy closed the stalled connection');
      assert.false(tail.includes('[DONE]'), 'the stream was cut, not completed');
      await stack.sim.whenIdle();
      const [generation] = stack.sim.generations().filter((g) => g.user === user && g.stream);
      assert.true(generation !== undefined && generation.cancelled && generation.completionTokens < 100_000,
        `the upstream was aborted (${generation?.completionTokens} tokens billed)`);
      assert.true(await scrapeMetric(stack.url, 'metergate_client_write_stalls_total') >= 1, 'counted');
      await assertBooks(assert, stack, user);
    } finally {
      socket.destroy();
    }
  });
});
