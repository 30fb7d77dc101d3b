// The database becomes unreachable while a stream runs (the replica reaches Postgres through
// a TCP proxy that is paused): the cost is kept, retried, and lands once when it comes back.
import { eventually, scrapeMetric, startTcpProxy, type TcpProxy } from '@metergate/testkit';
import {
  assertBooks, chatBody, requestsOf, settledEventually, startFixture, streamUntil, usageEntries,
  type Fixture,
} from './reliability-helpers.js';

const OUTAGE_MS = 2_000;

QUnit.module('reliability: database unreachable at settle time', (hooks) => {
  let f: Fixture;
  let proxy: TcpProxy;
  hooks.beforeEach(async () => {
    f = await startFixture();
    const target = new URL(f.db.url);
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port) });
  });
  hooks.afterEach(async () => {
    proxy?.resume();
    await f?.close();
    await proxy?.close();
  });

  QUnit.test('settle retried in memory while the database is away; settled once when it is back', async (assert) => {
    const replica = await f.spawn({}, proxy.via(f.db.url));
    const key = await f.createUser(replica, 'outage');
    const stream = await streamUntil(replica.url, key, chatBody({ chunk_delay_ms: 40, completion_tokens: 15 }), 2);
    proxy.pause();
    const { text, failure } = await stream.rest;
    assert.strictEqual(failure, null, 'the stream was not broken by the outage');
    assert.true(text.includes('"usage"') && text.trimEnd().endsWith('[DONE]'), 'the client got the whole stream, usage and [DONE]');
    assert.deepEqual((await requestsOf(f.db, 'outage')).map((row) => row.state), ['in_flight'],
      'while the database is away nothing is settled, and nothing is lost: the row is in flight');
    await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS));
    assert.deepEqual((await requestsOf(f.db, 'outage')).map((row) => row.state), ['in_flight'], 'still unsettled during the outage');
    proxy.resume();

    await settledEventually(f.db, 'outage');
    assert.strictEqual(await usageEntries(f.db, 'outage'), 1, 'exactly one usage entry');
    assert.true(await scrapeMetric(replica.url, 'metergate_settles_total', { outcome: 'deferred' }) >= 1, 'the settle was deferred and retried');
    await assertBooks(assert, f, ['outage']);
  });

  QUnit.test('an outage longer than the lease: another replica reconciles while the owner retries; one charge', async (assert) => {
    const owner = await f.spawn({}, proxy.via(f.db.url));
    const other = await f.spawn();
    const key = await f.createUser(other, 'race');
    const stream = await streamUntil(owner.url, key, chatBody({ chunk_delay_ms: 40, completion_tokens: 15 }), 2);
    proxy.pause();
    await stream.rest;
    // The owner's heartbeat stops reaching the database: after the lease the other replica
    // takes its request for orphaned and settles it from the lookup.
    await settledEventually(f.db, 'race');
    proxy.resume();
    // The owner's in-memory retry (backoff up to 30 s, see billing/settler.ts) then finds the
    // request settled and lands nothing.
    const already = await eventually(() => scrapeMetric(owner.url, 'metergate_settles_total', { outcome: 'already_settled' }), (n) => n >= 1, 45_000);
    assert.true(already >= 1, "the owner's own retry found it already settled");
    assert.strictEqual(await usageEntries(f.db, 'race'), 1, 'exactly one usage entry despite two settlers');
    await assertBooks(assert, f, ['race']);
  });
});
