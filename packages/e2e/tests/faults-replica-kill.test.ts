import { chatCall, costLockKey, eventually, ledgerUsageNano, startSimCluster, type SimCluster } from '@metergate/testkit';

// A replica dies (SIGKILL) while it holds a user's cost lock mid-stream. The kernel closes its
// sockets, Postgres ends the session, and the transaction-scoped advisory lock goes with it:
// the user's next request on another replica must not wait for any timeout.
const LOCK_TIMEOUT_MS = 30_000;
const PROCEED_MS_MAX = 3_000; // ten times below the lock timeout
const LONG = { latency_ms: 10, chunk_delay_ms: 50, completion_tokens: 100 }; // ~5 s stream
const SHORT = { latency_ms: 10, chunk_delay_ms: 1, completion_tokens: 4 };
const body = (sim: Record<string, number>) => ({ model: 'openai/gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hello' }], sim });

QUnit.module('faults: replica killed mid-stream', (hooks) => {
  let f: SimCluster;
  hooks.before(async () => {
    f = await startSimCluster({ replicas: 2, env: { LOG_LEVEL: 'warn', LOCK_TIMEOUT_MS: String(LOCK_TIMEOUT_MS) } });
  });
  hooks.after(async () => { await f?.close(); });

  QUnit.test('SIGKILL releases the user\'s lock at once; the next request on another replica proceeds', async (assert) => {
    const [victim, survivor] = f.cluster.replicas as [typeof f.cluster.replicas[0], typeof f.cluster.replicas[0]];
    const key = await f.cluster.createUser('carol', 1_000_000_000n);
    let firstByte!: () => void;
    const streaming = new Promise<void>((resolve) => { firstByte = resolve; });
    const doomed = chatCall(victim!.url, key, body(LONG), { onFirstByte: () => firstByte() });
    await streaming;
    const unsigned = BigInt.asUintN(64, costLockKey('carol'));
    const lockHolders = async () => (await f.pool.query<{ app: string }>(
      `select a.application_name as app from pg_locks l join pg_stat_activity a on a.pid = l.pid
        where l.locktype = 'advisory' and l.granted and l.classid = $1::oid and l.objid = $2::oid and l.objsubid = 1`,
      [String(unsigned >> 32n), String(unsigned & 0xffffffffn)])).rows.map((row) => row.app);
    assert.deepEqual(await lockHolders(), [`metergate:${f.cluster.replicaIds[0]}:lock`], 'the victim replica holds carol\'s lock');

    victim!.kill('SIGKILL');
    await victim!.exited;
    const next = await chatCall(survivor!.url, key, body(SHORT), { timeoutMs: LOCK_TIMEOUT_MS + 5_000 });
    const waitedMs = (next.firstByteAtMs ?? next.endedAtMs) - next.sentAtMs;
    assert.strictEqual(next.status, 200, next.body);
    assert.true(waitedMs < PROCEED_MS_MAX, `the next request started streaming after ${waitedMs.toFixed(0)} ms (lock timeout ${LOCK_TIMEOUT_MS} ms)`);
    assert.true(next.body.trimEnd().endsWith('data: [DONE]'));

    const cut = await doomed;
    assert.true(cut.failure !== null || !cut.body.includes('data: [DONE]'), 'the killed replica\'s client saw its stream break');
    await f.sim.whenIdle(10_000);
    const generations = f.sim.generations().filter((g) => g.user === 'carol');
    assert.strictEqual(generations.length, 2);
    assert.true(generations[0]!.cancelled, 'the upstream generation of the dead replica was cancelled');
    // The survivor's call is settled exactly; the dead replica's request is on record, not lost
    // (a reconciler may settle it from the generation lookup; it must never be charged twice).
    const survivorCost = generations[1]!.costNano;
    const ledger = await eventually(() => ledgerUsageNano(f.pool, 'carol'), (v) => v >= survivorCost);
    assert.true(ledger === survivorCost || ledger === survivorCost + generations[0]!.costNano, `ledger ${ledger}: the survivor's ${survivorCost}, plus at most the dead call's ${generations[0]!.costNano}`);
    const { rows } = await f.pool.query<{ replica_id: string; state: string }>(`select replica_id, state from requests where user_id = 'carol' order by started_at`);
    assert.strictEqual(rows.length, 2, 'both requests are on record');
    assert.strictEqual(rows[0]!.replica_id, f.cluster.replicaIds[0], 'including the dead replica\'s');
    // [DONE] reaches the client just before the holder's COMMIT: wait (bounded) for it.
    assert.deepEqual(await eventually(lockHolders, (holders) => holders.length === 0, 5_000), [], 'no lock left behind');
  });
});
