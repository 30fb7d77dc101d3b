// Streams that end without their cost: cut by the upstream, cut by the client, or followed by
// a generation lookup that answers 404 for a while. Each is settled from /generation.
import { scrapeMetric } from '@metergate/testkit';
import {
  assertBooks, chatBody, requestsOf, settledEventually, startFixture, streamUntil, usageEntries,
  type Fixture,
} from './reliability-helpers.js';

QUnit.module('reliability: costs that must be looked up', (hooks) => {
  let f: Fixture;
  hooks.before(async () => { f = await startFixture(); });
  hooks.after(async () => { await f?.close(); });

  QUnit.test('upstream stream cut without usage or [DONE]: settled from the generation lookup', async (assert) => {
    const replica = f.replicas[0] ?? await f.spawn();
    const key = await f.createUser(replica, 'cut');
    const stream = await streamUntil(replica.url, key, chatBody({ chunk_delay_ms: 5, completion_tokens: 20, cut_after_tokens: 6 }), 1);
    const { text } = await stream.rest;
    assert.false(text.includes('"usage"') || text.includes('[DONE]'), 'the client got neither usage nor [DONE]');
    const rows = await settledEventually(f.db, 'cut');
    assert.strictEqual(rows[0]?.state, 'settled', 'settled from the lookup');
    const [generation] = f.sim.generations().filter((g) => g.user === 'cut');
    assert.strictEqual(generation?.completionTokens, 6, 'the upstream billed the six tokens before the cut');
    await assertBooks(assert, f, ['cut']);
  });

  QUnit.test('lookup answers 404 for longer than the in-process attempts: the reconciler settles it when it appears', async (assert) => {
    const replica = f.replicas[0] ?? await f.spawn();
    const key = await f.createUser(replica, 'late');
    const lookup404Ms = 2_500;
    const before = await scrapeMetric(replica.url, 'metergate_reconciler_requests_total', { outcome: 'retry_later' });
    const stream = await streamUntil(replica.url, key, chatBody({ completion_tokens: 5, omit_usage: true, lookup_404_ms: lookup404Ms }), 1);
    const { text } = await stream.rest;
    assert.true(text.includes('[DONE]') && !text.includes('"usage"'), 'a complete stream without usage');
    const rows = await settledEventually(f.db, 'late', lookup404Ms + 10_000);
    assert.strictEqual(rows[0]?.state, 'settled', 'settled once the lookup answered');
    assert.true((rows[0]?.lookup_attempts ?? 0) >= 2, `the reconciler retried with backoff (${rows[0]?.lookup_attempts} claims)`);
    assert.true(await scrapeMetric(replica.url, 'metergate_cost_lookups_total', { outcome: 'not_found' }) >= 3, 'the in-process lookups met 404s');
    assert.true(await scrapeMetric(replica.url, 'metergate_reconciler_requests_total', { outcome: 'retry_later' }) > before,
      'the reconciler rescheduled while the lookup kept answering 404');
    await assertBooks(assert, f, ['late']);
  });

  QUnit.test('client disconnects mid-stream: upstream aborted at once, the partial generation billed', async (assert) => {
    const replica = f.replicas[0] ?? await f.spawn();
    const key = await f.createUser(replica, 'gone');
    const tokens = 60;
    const abort = new AbortController();
    const stream = await streamUntil(replica.url, key, chatBody({ chunk_delay_ms: 25, completion_tokens: tokens, cancellable: true }), 3, { abort });
    abort.abort();
    await stream.rest;
    await f.sim.whenIdle(5_000);
    const [generation] = f.sim.generations().filter((g) => g.user === 'gone');
    assert.true(generation!.cancelled, 'the upstream generation was cancelled');
    assert.true(generation!.completionTokens < tokens / 2, `it stopped early (${generation!.completionTokens} of ${tokens} tokens)`);
    const rows = await settledEventually(f.db, 'gone');
    assert.deepEqual(rows.map((row) => row.state), ['settled'], 'the partial generation was settled');
    assert.strictEqual(await usageEntries(f.db, 'gone'), 1, 'one usage entry');
    assert.notStrictEqual((await requestsOf(f.db, 'gone'))[0]?.generation_id, null, 'the generation id was recorded');
    await assertBooks(assert, f, ['gone']);
  });
});
