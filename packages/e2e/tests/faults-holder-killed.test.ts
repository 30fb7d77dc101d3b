import { chatCall, costLockKey, eventually, ledgerUsageNano, scrapeMetric, startSimCluster, type SimCluster } from '@metergate/testkit';

// The lock holder's Postgres session is ended under it mid-stream, as
// idle_in_transaction_session_timeout or an operator's pg_terminate_backend would. The
// barrier pins its per-transaction idle_in_transaction_session_timeout with set_config(..., true)
// (holdMsMax, minutes), so an ALTER ROLE/DATABASE setting cannot shorten it; terminating the
// backend is the same event seen from the replica (the session dies, the lock goes with it).
const LONG = { latency_ms: 10, chunk_delay_ms: 40, completion_tokens: 40 }; // ~1.6 s stream
const body = (sim: Record<string, number>) => ({ model: 'openai/gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hello' }], sim });

QUnit.module('faults: lock holder session ended mid-stream', (hooks) => {
  let f: SimCluster;
  hooks.before(async () => { f = await startSimCluster({ replicas: 1, env: { LOG_LEVEL: 'warn' } }); });
  hooks.after(async () => { await f?.close(); });

  QUnit.test('the stream completes, the cost lands exactly once, the replica recovers', async (assert) => {
    const [url, replicaId] = [f.cluster.urls[0]!, f.cluster.replicaIds[0]!];
    const key = await f.cluster.createUser('victim', 1_000_000_000n);
    let firstByte!: () => void;
    const streaming = new Promise<void>((resolve) => { firstByte = resolve; });
    const call = chatCall(url, key, body(LONG), { onFirstByte: () => firstByte() });
    await streaming;

    const unsigned = BigInt.asUintN(64, costLockKey('victim'));
    const { rows: holders } = await f.pool.query<{ pid: number; state: string }>(
      `select a.pid, a.state from pg_stat_activity a join pg_locks l on l.pid = a.pid
        where a.application_name = $1::text and a.datname = current_database()
          and l.locktype = 'advisory' and l.granted and l.classid = $2::oid and l.objid = $3::oid and l.objsubid = 1`,
      [`metergate:${replicaId}:lock`, String(unsigned >> 32n), String(unsigned & 0xffffffffn)]);
    assert.strictEqual(holders.length, 1, 'one lock-pool session holds the user\'s lock');
    assert.strictEqual(holders[0]!.state, 'idle in transaction', 'it idles in its transaction while the stream runs');
    const { rows: [killed] } = await f.pool.query<{ ok: boolean }>('select pg_terminate_backend($1::int) as ok', [holders[0]!.pid]);
    assert.true(killed!.ok, 'holder session terminated');

    const result = await call;
    assert.strictEqual(result.status, 200);
    assert.strictEqual(result.failure, null, 'the client connection was not cut');
    assert.true(result.body.trimEnd().endsWith('data: [DONE]'), 'the client got the whole stream');
    await f.sim.whenIdle(10_000);
    const billed = f.sim.billedNano({ user: 'victim' });
    assert.true(billed > 0n);
    assert.strictEqual(await eventually(() => ledgerUsageNano(f.pool, 'victim'), (v) => v === billed), billed, 'the cost landed');
    const { rows: [entries] } = await f.pool.query<{ n: number }>(`select count(*)::int as n from ledger_entries where user_id = 'victim' and kind = 'usage'`);
    assert.strictEqual(entries!.n, 1, 'exactly one usage entry: nothing charged twice');
    assert.strictEqual(await scrapeMetric(url, 'metergate_lock_holder_lost_total'), 1, 'the loss was counted');

    // The broken client was destroyed, not returned to the pool: the next call works.
    const next = await chatCall(url, key, body({ latency_ms: 5, completion_tokens: 3 }));
    assert.strictEqual(next.status, 200, next.body);
    await f.sim.whenIdle(10_000);
    const billedAfter = f.sim.billedNano({ user: 'victim' });
    assert.strictEqual(await eventually(() => ledgerUsageNano(f.pool, 'victim'), (v) => v === billedAfter), billedAfter, 'books still exact');
    assert.strictEqual(f.cluster.replicas[0]!.child.exitCode, null, 'the replica is still running');
  });
});
