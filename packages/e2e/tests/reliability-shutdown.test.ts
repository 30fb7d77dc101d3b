// SIGTERM while a non-streaming call is still waiting on the upstream past the shutdown
// deadline: its generation runs to the end upstream (and is billed in full), so the replica must
// keep its heartbeat, its settler and its pools until that call's cost is in the ledger.
import { chatBody, post, requestsOf, startFixture, usageEntries, WAIT_MS, assertBooks, type Fixture } from './reliability-helpers.js';

const LATENCY_MS = 3_000;

QUnit.module('reliability: shutdown with a non-streaming call in progress', (hooks) => {
  let f: Fixture;
  hooks.beforeEach(async () => { f = await startFixture(); });
  hooks.afterEach(async () => { await f?.close(); });

  QUnit.test('SIGTERM past the deadline: the non-streaming call finishes upstream and its cost lands before the process exits', async (assert) => {
    // A short drain deadline and settle budget: the call outlives both.
    const replica = await f.spawn({ SHUTDOWN_DEADLINE_MS: '300', SETTLE_TIMEOUT_MS: '100', REPLICA_ID: 'json-at-sigterm' });
    const key = await f.createUser(replica, 'json-term');
    const call = post(replica.url, key, chatBody({ latency_ms: LATENCY_MS, completion_tokens: 9 }, false))
      .then(async (response) => ({ status: response.status, text: await response.text() }), (error: unknown) => ({ status: 0, text: String(error) }));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const [open] = await requestsOf(f.db, 'json-term');
    assert.strictEqual(open?.state, 'in_flight', 'the call is in flight at SIGTERM');

    replica.kill('SIGTERM');
    const exit = await Promise.race([replica.exited, new Promise((resolve) => setTimeout(() => resolve('timeout'), WAIT_MS + LATENCY_MS))]);
    assert.strictEqual(exit, 0, 'the process exited 0');
    await call;
    // Checked after the exit, with no other replica running: nobody else could have settled it.
    const rows = await requestsOf(f.db, 'json-term');
    assert.deepEqual(rows.map((row) => row.state), ['settled'], `settled by the stopping replica itself: ${JSON.stringify(rows)}`);
    assert.strictEqual(await usageEntries(f.db, 'json-term'), 1, 'one usage entry');
    await assertBooks(assert, f, ['json-term']);
  });
});
