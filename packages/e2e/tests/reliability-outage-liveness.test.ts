// After a database outage longer than REPLICA_LEASE_MS every heartbeat in the database is
// stale. The first reconciler pass after it must not take live replicas for dead before their
// beats have had a chance to land: that would mark live calls unresolved (or awaiting a
// lookup) and store "interrupted" answers for their Idempotency-Keys (hardening item 15).
// Both replicas reach Postgres through TCP proxies that cut every connection at once.
import { eventually, startTcpProxy, type TcpProxy } from '@metergate/testkit';
import {
  assertBooks, chatBody, post, startFixture, streamUntil, usageEntries, WAIT_MS, type Fixture,
} from './reliability-helpers.js';

const LEASE_MS = 1_500;
const OUTAGE_MS = 2_000;
// The owner's pool gets back a little later than the judge's (a slower reconnect): the
// window in which the judge sees the database again but the owner's beat has not landed.
const OWNER_BACK_LATE_MS = 150;

interface Seen { state: string; reason: string | null; keyState: string | null; keyStatus: number | null }

async function snapshot(f: Fixture, user: string): Promise<Seen[]> {
  const result = await f.db.pool.query<Seen>(
    `select r.state, r.reason, k.state as "keyState", k.response_status as "keyStatus"
       from requests r left join idempotency_keys k on k.request_id = r.id
      where r.user_id = $1::text`, [user]);
  return result.rows;
}

QUnit.module('reliability: liveness after a database outage longer than the lease', (hooks) => {
  let f: Fixture;
  const proxies: TcpProxy[] = [];
  hooks.beforeEach(async () => { f = await startFixture(); });
  hooks.afterEach(async () => {
    for (const proxy of proxies) proxy.resume();
    await f?.close();
    await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
  });

  QUnit.test("the first pass after the outage leaves a live replica's calls and keys alone", async (assert) => {
    const target = new URL(f.db.url);
    const [judgeProxy, ownerProxy] = await Promise.all([0, 1].map(() => startTcpProxy({ host: target.hostname, port: Number(target.port) })));
    proxies.push(judgeProxy!, ownerProxy!);
    const common = { REPLICA_LEASE_MS: String(LEASE_MS), HEARTBEAT_INTERVAL_MS: '100' };
    // The judge reconciles often; the owner beats at the slowest rate the lease allows.
    const judge = await f.spawn({ ...common, RECONCILE_INTERVAL_MS: '50' }, judgeProxy!.via(f.db.url));
    const owner = await f.spawn({ ...common, HEARTBEAT_INTERVAL_MS: '300', RECONCILE_INTERVAL_MS: '60000' }, ownerProxy!.via(f.db.url));
    const [keyJson, keyStream] = await Promise.all([f.createUser(judge, 'live-json'), f.createUser(judge, 'live-stream')]);

    // Two live calls on the owner that outlast the outage: a non-streaming one (no generation
    // id until it ends) and a stream (id known), both under an Idempotency-Key.
    const json = post(owner.url, keyJson, chatBody({ latency_ms: OUTAGE_MS + 2_500, completion_tokens: 5 }, false), { 'idempotency-key': 'json-1' })
      .then(async (response) => ({ status: response.status, text: await response.text() }));
    const stream = await streamUntil(owner.url, keyStream, chatBody({ chunk_delay_ms: 100, completion_tokens: 45 }), 2, { headers: { 'idempotency-key': 'stream-1' } });

    await eventually(async () => (await snapshot(f, 'live-json')).length, (n) => n === 1, WAIT_MS);
    judgeProxy!.pause();
    ownerProxy!.pause();
    await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS));
    judgeProxy!.resume();
    const bad: Array<{ user: string; row: Seen }> = [];
    const watch = async (untilMs: number) => {
      while (Date.now() < untilMs) {
        for (const user of ['live-json', 'live-stream']) {
          for (const row of await snapshot(f, user)) {
            if (row.state === 'unresolved' || row.state === 'awaiting_cost' || (row.keyState === 'done' && row.keyStatus !== 200)) bad.push({ user, row });
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    const watching = watch(Date.now() + OWNER_BACK_LATE_MS + 2 * LEASE_MS);
    await new Promise((resolve) => setTimeout(resolve, OWNER_BACK_LATE_MS));
    ownerProxy!.resume();
    await watching;
    assert.deepEqual(bad.slice(0, 3), [], 'no live call was taken for orphaned: never unresolved, awaiting a lookup, or answered "interrupted"');

    const [jsonDone, streamDone] = await Promise.all([json, stream.rest]);
    assert.strictEqual(jsonDone.status, 200, `the non-streaming call completed: ${jsonDone.text.slice(0, 200)}`);
    assert.strictEqual(streamDone.failure, null, 'the stream was not cut');
    assert.true(streamDone.text.trimEnd().endsWith('data: [DONE]'), 'the stream completed');
    for (const user of ['live-json', 'live-stream']) assert.strictEqual(await usageEntries(f.db, user), 1, `${user}: one usage entry`);
    const replay = await post(owner.url, keyJson, chatBody({ latency_ms: OUTAGE_MS + 2_500, completion_tokens: 5 }, false), { 'idempotency-key': 'json-1' });
    assert.strictEqual(replay.status, 200, 'the key replays the real answer');
    assert.strictEqual(await replay.text(), jsonDone.text, 'byte for byte');
    await assertBooks(assert, f, ['live-json', 'live-stream']);
  });

  QUnit.test('a replica that really died during the outage is still reconciled once the judge has been back a lease', async (assert) => {
    const target = new URL(f.db.url);
    const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port) });
    proxies.push(proxy);
    const common = { REPLICA_LEASE_MS: String(LEASE_MS), HEARTBEAT_INTERVAL_MS: '100' };
    const judge = await f.spawn({ ...common, RECONCILE_INTERVAL_MS: '50' }, proxy.via(f.db.url));
    const victim = await f.spawn({ ...common, RECONCILE_INTERVAL_MS: '60000' });
    const key = await f.createUser(judge, 'died-in-outage');
    const stream = await streamUntil(victim.url, key, chatBody({ chunk_delay_ms: 20, completion_tokens: 20, cancellable: false }), 2);
    proxy.pause();
    victim.kill('SIGKILL');
    await victim.exited;
    await stream.rest;
    await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS));
    proxy.resume();
    assert.strictEqual(await eventually(() => usageEntries(f.db, 'died-in-outage'), (n) => n === 1, WAIT_MS), 1,
      'the dead replica\'s call was settled by the judge');
    await assertBooks(assert, f, ['died-in-outage']);
  });
});
