// A replica dies mid-stream (kill -9) or is asked to stop (SIGTERM): nothing the upstream
// billed is lost, nothing is charged twice.
import { eventually, scrapeMetric } from '@metergate/testkit';
import {
  assertBooks, chatBody, chatCalls, post, requestsOf, settledEventually, startFixture, streamUntil, usageEntries, WAIT_MS,
  type Fixture,
} from './reliability-helpers.js';

const TOKENS = 30;
const CHUNK_DELAY_MS = 30;

QUnit.module('reliability: a replica dies or stops mid-stream', (hooks) => {
  let f: Fixture;
  hooks.beforeEach(async () => { f = await startFixture(); });
  hooks.afterEach(async () => { await f?.close(); });

  for (const cancellable of [false, true]) {
    QUnit.test(`kill -9 mid-stream (provider ${cancellable ? 'stops at the closed socket' : 'keeps generating'}): another replica's reconciler settles exactly what the upstream billed`, async (assert) => {
      const victim = await f.spawn();
      const survivor = await f.spawn();
      const key = await f.createUser(survivor, 'crash');
      const body = chatBody({ chunk_delay_ms: CHUNK_DELAY_MS, completion_tokens: TOKENS, cancellable });
      const idempotency = { 'idempotency-key': `crash-${cancellable}` };
      const stream = await streamUntil(victim.url, key, body, 3, { headers: idempotency });
      const [open] = await requestsOf(f.db, 'crash');
      assert.strictEqual(open?.state, 'in_flight', 'the request was recorded before forwarding and is in flight');

      victim.kill('SIGKILL');
      assert.strictEqual(await victim.exited, 'SIGKILL', 'the victim died');
      const { text, failure } = await stream.rest;
      assert.false(text.includes('[DONE]'), `the client saw the stream break (${failure ?? 'eof'})`);

      const rows = await settledEventually(f.db, 'crash');
      assert.strictEqual(rows[0]?.state, 'settled', 'the orphaned request was settled by the surviving replica');
      const [generation] = f.sim.generations().filter((g) => g.user === 'crash');
      if (cancellable) {
        assert.true(generation!.cancelled && generation!.completionTokens < TOKENS, `the provider stopped at the close (${generation!.completionTokens} tokens billed)`);
      } else {
        assert.strictEqual(generation!.completionTokens, TOKENS, 'the provider generated (and billed) everything');
      }
      assert.strictEqual(await usageEntries(f.db, 'crash'), 1, 'one usage entry');
      assert.true(await scrapeMetric(survivor.url, 'metergate_reconciler_requests_total', { outcome: 'settled' }) >= 1,
        'the survivor counts a reconciler settle');

      // The client retries with its Idempotency-Key: the call is not run (and charged) again;
      // it learns the first attempt was interrupted after reaching the upstream.
      const retry = await eventually(async () => {
        const response = await post(survivor.url, key, body, idempotency);
        return { status: response.status, replayed: response.headers.get('idempotent-replayed'), text: await response.text() };
      }, (answer) => answer.status !== 409, WAIT_MS);
      assert.strictEqual(retry.status, 500, `the retry is answered from the key: ${retry.text}`);
      assert.strictEqual(retry.replayed, 'true', 'as a replay');
      assert.true(retry.text.includes('interrupted'), 'saying the first attempt was interrupted');
      assert.strictEqual(chatCalls(f.sim, 'crash'), 1, 'one upstream call in all');
      await assertBooks(assert, f, ['crash']);
    });
  }

  QUnit.test('SIGTERM mid-stream: readiness 503 and new calls refused while draining; the stream completes, is settled, exit 0', async (assert) => {
    const replica = await f.spawn({ SHUTDOWN_DEADLINE_MS: '15000', REPLICA_ID: 'draining-one' });
    const key = await f.createUser(replica, 'term');
    const stream = await streamUntil(replica.url, key, chatBody({ chunk_delay_ms: 40, completion_tokens: 40 }), 2);

    replica.kill('SIGTERM');
    const ready = await eventually(
      () => fetch(`${replica.url}/readyz`, { signal: AbortSignal.timeout(WAIT_MS) }).then((r) => r.status, () => 0),
      (status) => status === 503, 5_000);
    assert.strictEqual(ready, 503, `readiness answers 503 while draining ${JSON.stringify(replica.logs.slice(-10))}`);
    const refused = await post(replica.url, key, chatBody({ completion_tokens: 2 }));
    assert.strictEqual(refused.status, 503, 'a new call is refused while draining');
    assert.strictEqual(((await refused.json()) as { error: { code: string } }).error.code, 'draining');

    const { text, failure } = await stream.rest;
    assert.strictEqual(failure, null, 'the in-flight stream was not cut');
    assert.true(text.trimEnd().endsWith('data: [DONE]'), 'the in-flight stream completed with [DONE]');
    assert.strictEqual(await Promise.race([replica.exited, new Promise((r) => setTimeout(() => r('timeout'), WAIT_MS))]), 0, 'the process exited 0');
    const rows = await requestsOf(f.db, 'term');
    assert.deepEqual(rows.map((row) => row.state), ['settled'], 'the drained stream was settled before exit (the refused call left no row)');
    const beat = await f.db.pool.query(`select 1 from replicas where id = 'draining-one'`);
    assert.strictEqual(beat.rowCount, 0, 'the replica removed its heartbeat row on the way out');
    await assertBooks(assert, f, ['term']);
  });

  QUnit.test('reconcilers on several replicas at once never settle an orphan twice', async (assert) => {
    const victim = await f.spawn();
    const others = await Promise.all([f.spawn(), f.spawn(), f.spawn()]);
    const users = ['multi0', 'multi1', 'multi2', 'multi3'];
    const keys = await Promise.all(users.map((user) => f.createUser(others[0]!, user)));
    const streams = await Promise.all(keys.map((key) => streamUntil(victim.url, key, chatBody({ chunk_delay_ms: 20, completion_tokens: 20, cancellable: false }), 2)));
    victim.kill('SIGKILL');
    await victim.exited;
    await Promise.all(streams.map((stream) => stream.rest));
    for (const user of users) await settledEventually(f.db, user, WAIT_MS);
    for (const user of users) assert.strictEqual(await usageEntries(f.db, user), 1, `${user}: one usage entry`);
    await assertBooks(assert, f, users);
  });
});
