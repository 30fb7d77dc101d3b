// In-memory retries are bounded (hardening item 14): during a database outage a settle is
// retried RETRY_ATTEMPTS_MAX times, then given up in memory and handed to the reconciler,
// which marks it due as soon as the database is back and settles it from the lookup.
import { verify } from '@metergate/db';
import { eventually, scrapeMetric, startTcpProxy, type TcpProxy } from '@metergate/testkit';
import {
  assertBooks, chatBody, post, requestsOf, settledEventually, startFixture, STALE_IN_FLIGHT_MS, streamUntil, usageEntries, WAIT_MS,
  type Fixture,
} from './reliability-helpers.js';

QUnit.module('reliability: bounded retries', (hooks) => {
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

  QUnit.test('a settle that cannot land is given up after RETRY_ATTEMPTS_MAX and settled by the reconciler once the database is back', async (assert) => {
    const replica = await f.spawn({ RETRY_ATTEMPTS_MAX: '2' }, proxy.via(f.db.url));
    const key = await f.createUser(replica, 'bounded');
    const stream = await streamUntil(replica.url, key, chatBody({ chunk_delay_ms: 40, completion_tokens: 10 }), 2);
    proxy.pause();
    const { text, failure } = await stream.rest;
    assert.strictEqual(failure, null, 'the stream completed despite the outage');
    assert.true(text.trimEnd().endsWith('[DONE]'), 'with [DONE] (the settle was deferred)');

    const givenUp = await eventually(() => scrapeMetric(replica.url, 'metergate_retry_given_up_total', { queue: 'settle', reason: 'attempts' }),
      (n) => n >= 1, WAIT_MS);
    assert.strictEqual(givenUp, 1, 'the settle was given up after its attempts');
    assert.strictEqual(await scrapeMetric(replica.url, 'metergate_retry_pending', { queue: 'settle' }), 0, 'nothing is kept retrying in memory');
    assert.strictEqual(await scrapeMetric(replica.url, 'metergate_retry_pending', { queue: 'hand_off' }), 1,
      'the hand-off waits for the database (it could not be marked yet)');
    assert.deepEqual((await requestsOf(f.db, 'bounded')).map((row) => row.state), ['in_flight'], 'unsettled, not lost');

    proxy.resume();
    const rows = await settledEventually(f.db, 'bounded');
    assert.strictEqual(rows[0]?.state, 'settled', 'the reconciler settled it from the lookup');
    assert.strictEqual(await usageEntries(f.db, 'bounded'), 1, 'once');
    assert.strictEqual(await scrapeMetric(replica.url, 'metergate_retry_pending', { queue: 'hand_off' }), 0, 'hand-off done');
    await assertBooks(assert, f, ['bounded']);
  });

  QUnit.test('background cost lookups are bounded by COST_LOOKUP_TASKS_MAX: the rest go to the reconciler at once', async (assert) => {
    const replica = await f.spawn({ COST_LOOKUP_TASKS_MAX: '1', COST_LOOKUP_BACKOFF_MS: '1000' });
    const users = ['lookups-0', 'lookups-1', 'lookups-2'];
    const keys = await Promise.all(users.map((user) => f.createUser(replica, user)));
    // Streams without a usage event, whose generations the upstream can look up only after 3 s: the one
    // lookup this replica runs itself is still busy (backoff 1 s, 2 s, 4 s) when the others end.
    const body = chatBody({ completion_tokens: 4, omit_usage: true, lookup_404_ms: 3_000 });
    const responses = await Promise.all(keys.map((key) => post(replica.url, key, body).then((response) => response.text())));
    assert.true(responses.every((text) => text.trimEnd().endsWith('[DONE]')), 'every stream completed');
    assert.strictEqual(await scrapeMetric(replica.url, 'metergate_retry_given_up_total', { queue: 'cost_lookup', reason: 'full' }), 2,
      'one lookup ran in this process, the other two were handed to the reconciler');
    assert.true(await scrapeMetric(replica.url, 'metergate_cost_lookups_running') <= 1, 'at most one running');
    for (const user of users) await settledEventually(f.db, user);
    for (const user of users) assert.strictEqual(await usageEntries(f.db, user), 1, `${user} settled once`);
    await assertBooks(assert, f, users);
  });

  QUnit.test('a settle failing permanently is not retried: unresolved for an operator at once, its hold kept', async (assert) => {
    // A real Postgres error no retry can cure: this user's usage rows violate a check (a
    // trigger in this test's database only).
    await f.db.pool.query(`create function mgtest_poison() returns trigger language plpgsql as $$
      begin
        if new.user_id = 'poisoned' and new.kind = 'usage' then
          raise exception 'poisoned for the test' using errcode = '23514';
        end if;
        return new;
      end $$`);
    await f.db.pool.query('create trigger mgtest_poison before insert on ledger_entries for each row execute function mgtest_poison()');
    const replica = await f.spawn({ RECONCILE_ATTEMPTS_MAX: '3' });
    const key = await f.createUser(replica, 'poisoned');
    const text = await (await post(replica.url, key, chatBody({ completion_tokens: 4 }))).text();
    assert.true(text.trimEnd().endsWith('[DONE]'), 'the stream completed (the failed settle was handed off)');
    const [row] = await eventually(() => requestsOf(f.db, 'poisoned'), (rows) => rows[0]?.state === 'unresolved', WAIT_MS);
    // The settler tells a refusal no retry can cure (SQLSTATE class 22/23) from an outage and
    // leaves it to an operator at once, with the SQLSTATE (README, Money).
    assert.strictEqual(row?.reason, 'settle_rejected:23514', `unresolved for an operator: ${JSON.stringify(row)}`);
    assert.true(await scrapeMetric(replica.url, 'metergate_settles_total', { outcome: 'unresolved' }) >= 1, 'counted as unresolved');
    assert.strictEqual(await scrapeMetric(replica.url, 'metergate_retry_pending', { queue: 'settle' }), 0, 'nothing kept in memory');
    const held = await f.db.pool.query<{ held: string }>(`select held_nano::text as held from users where id = 'poisoned'`);
    assert.true(BigInt(held.rows[0]!.held) > 0n, 'its hold stays until an operator settles or voids it');
    assert.strictEqual(await usageEntries(f.db, 'poisoned'), 0, 'nothing charged automatically');
    await f.sim.whenIdle(WAIT_MS);
    assert.true(f.sim.billedNano({ user: 'poisoned' }) > 0n, 'the upstream billed it (the operator settles it from the log)');
    const report = await verify.verifyBooks(f.db.pool, { staleInFlightMs: STALE_IN_FLIGHT_MS, sampleMax: 5 });
    assert.true(report.ok, `verify finds no breach: ${JSON.stringify(report.breaches)}`);
  });
});
