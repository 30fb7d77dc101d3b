// Idempotency-Key on POST /v1/chat/completions: one upstream call and one charge per key, a
// replay for retries, 409 while running, 422 for another body, keys per user.
import { scrapeMetric } from '@metergate/testkit';
import { assertBooks, chatBody, chatCalls, post, startFixture, usageEntries, WAIT_MS, type Fixture } from './reliability-helpers.js';
import type { Replica } from '@metergate/testkit';

const RETRIES = 5;

async function errorCode(response: Response): Promise<string | null> {
  const body = (await response.json()) as { error?: { code?: string } };
  return body.error?.code ?? null;
}

QUnit.module('reliability: Idempotency-Key', (hooks) => {
  let f: Fixture;
  let a: Replica;
  let b: Replica;
  hooks.before(async () => {
    f = await startFixture();
    [a, b] = await Promise.all([f.spawn(), f.spawn()]);
  });
  hooks.after(async () => { await f?.close(); });

  QUnit.test(`${RETRIES} concurrent retries of one streaming call: one upstream call, one charge, 409 for the others, then replays`, async (assert) => {
    const key = await f.createUser(a, 'idem');
    const body = chatBody({ latency_ms: 400, chunk_delay_ms: 10, completion_tokens: 12 });
    const headers = { 'idempotency-key': 'order-42' };
    const responses = await Promise.all(Array.from({ length: RETRIES }, (_, i) => post(i % 2 === 0 ? a.url : b.url, key, body, headers)));
    const texts = await Promise.all(responses.map((response) => response.text()));
    const ok = responses.flatMap((response, i) => (response.status === 200 ? [texts[i]!] : []));
    const conflicts = responses.filter((response, i) => response.status === 409 && texts[i]!.includes('"conflict"'));
    assert.strictEqual(ok.length, 1, 'exactly one attempt ran');
    assert.strictEqual(conflicts.length, RETRIES - 1, 'the others were told 409 conflict while it ran');
    assert.true(ok[0]!.trimEnd().endsWith('data: [DONE]'), 'the one that ran streamed to the end');
    assert.strictEqual(chatCalls(f.sim, 'idem'), 1, 'one upstream call');

    for (const replica of [a, b]) {
      const replay = await post(replica.url, key, body, headers);
      assert.strictEqual(replay.status, 200, 'a retry after completion succeeds');
      assert.strictEqual(replay.headers.get('idempotent-replayed'), 'true', 'marked as a replay');
      assert.strictEqual(replay.headers.get('content-type')?.startsWith('text/event-stream'), true, 'as a stream');
      assert.strictEqual(await replay.text(), ok[0], 'the same stream, byte for byte');
    }
    assert.strictEqual(chatCalls(f.sim, 'idem'), 1, 'still one upstream call');
    assert.strictEqual(await usageEntries(f.db, 'idem'), 1, 'one charge');

    const other = await post(a.url, key, chatBody({ completion_tokens: 3 }), headers);
    assert.strictEqual(other.status, 422, 'the same key with another body is refused');
    assert.strictEqual(await errorCode(other), 'unprocessable');
    assert.true(await scrapeMetric(a.url, 'metergate_idempotency_total', { outcome: 'replayed' }) >= 1, 'replays are counted');
    await assertBooks(assert, f, ['idem']);
  });

  QUnit.test('non-streaming: the replay has the same status and body; keys are per user', async (assert) => {
    const [k1, k2] = await Promise.all([f.createUser(a, 'idem-json-1'), f.createUser(a, 'idem-json-2')]);
    const body = chatBody({ completion_tokens: 6 }, false);
    const headers = { 'idempotency-key': 'shared-key' };
    const first = await post(a.url, k1, body, headers);
    const firstText = await first.text();
    assert.strictEqual(first.status, 200);
    const again = await post(b.url, k1, body, headers);
    assert.strictEqual(again.status, 200, 'same status');
    assert.strictEqual(await again.text(), firstText, 'same body, byte for byte');
    assert.strictEqual(again.headers.get('x-generation-id'), first.headers.get('x-generation-id'), 'same generation');

    const theirs = await post(a.url, k2, body, headers);
    assert.strictEqual(theirs.status, 200, "another user's identical key runs on its own");
    assert.strictEqual(theirs.headers.get('idempotent-replayed'), null, 'not a replay');
    assert.notStrictEqual(await theirs.text(), firstText, 'its own completion');
    assert.strictEqual(chatCalls(f.sim, 'idem-json-1'), 1, 'user 1: one upstream call');
    assert.strictEqual(chatCalls(f.sim, 'idem-json-2'), 1, 'user 2: one upstream call');
    await assertBooks(assert, f, ['idem-json-1', 'idem-json-2']);
  });

  QUnit.test('an error before any output releases the key: the retry runs again (nothing was charged)', async (assert) => {
    const key = await f.createUser(a, 'idem-err');
    const failing = chatBody({ error_before: { status: 503, message: 'no provider' } });
    const headers = { 'idempotency-key': 'try-again' };
    const first = await post(a.url, key, failing, headers);
    assert.strictEqual(first.status, 503, 'the upstream error is relayed');
    await first.text();
    const second = await post(a.url, key, failing, headers);
    assert.strictEqual(second.status, 503, 'the retry ran again (not a replay of the error)');
    assert.strictEqual(second.headers.get('idempotent-replayed'), null);
    await second.text();
    assert.strictEqual(chatCalls(f.sim, 'idem-err'), 2, 'two upstream calls');
    assert.strictEqual(await usageEntries(f.db, 'idem-err'), 0, 'nothing charged');

    const bad = await post(a.url, key, chatBody({}), { 'idempotency-key': 'k'.repeat(256) });
    assert.strictEqual(bad.status, 400, 'a malformed key is a 400');
    await bad.text();
    await assertBooks(assert, f, ['idem-err']);
  });

  QUnit.test('client gone mid-stream: the partial, charged result is what a retry replays (completed with [DONE])', async (assert) => {
    const key = await f.createUser(a, 'idem-gone');
    const body = chatBody({ chunk_delay_ms: 25, completion_tokens: 60, cancellable: true });
    const headers = { 'idempotency-key': 'left-early' };
    const abort = new AbortController();
    const response = await post(a.url, key, body, headers, abort.signal);
    const reader = response.body!.getReader();
    await reader.read();
    await reader.read();
    abort.abort();
    await f.sim.whenIdle(WAIT_MS);
    let replay: Response | null = null;
    for (let i = 0; i < 50; i += 1) {
      replay = await post(a.url, key, body, headers);
      if (replay.status !== 409) break;
      await replay.text();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.strictEqual(replay?.status, 200, 'the retry gets the stored result');
    assert.strictEqual(replay?.headers.get('idempotent-replayed'), 'true');
    const text = await replay!.text();
    assert.true(text.trimEnd().endsWith('data: [DONE]'), 'an equivalent completed stream');
    assert.strictEqual(chatCalls(f.sim, 'idem-gone'), 1, 'one upstream call');
    await assertBooks(assert, f, ['idem-gone']);
  });
});
