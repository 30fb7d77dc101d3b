import { chatCall, eventually, ledgerUsageNano, scrapeMetric, startSimCluster, type SimCluster } from '@metergate/testkit';

// One lock-pool client, a short acquire timeout: a replica streams for at most one user at a
// time, and the next user is told so quickly (503 + Retry-After) instead of hanging.
const ACQUIRE_TIMEOUT_MS = 500;
const LONG = { latency_ms: 10, chunk_delay_ms: 50, completion_tokens: 40 }; // ~2 s stream
const SHORT = { latency_ms: 10, chunk_delay_ms: 1, completion_tokens: 4 };
const body = (sim: Record<string, number>) => ({ model: 'openai/gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hello' }], sim });

QUnit.module('faults: lock pool exhausted', (hooks) => {
  let f: SimCluster;
  hooks.before(async () => {
    f = await startSimCluster({ replicas: 1, env: { LOG_LEVEL: 'warn', LOCK_POOL_SIZE: '1', POOL_ACQUIRE_TIMEOUT_MS: String(ACQUIRE_TIMEOUT_MS) } });
  });
  hooks.after(async () => { await f?.close(); });

  QUnit.test('LOCK_POOL_SIZE=1: a second user streaming at once gets 503 with Retry-After after the acquire timeout', async (assert) => {
    const url = f.cluster.urls[0]!;
    const [keyA, keyB] = await Promise.all([f.cluster.createUser('alice', 1_000_000_000n), f.cluster.createUser('bob', 1_000_000_000n)]);
    let firstByte!: () => void;
    const streaming = new Promise<void>((resolve) => { firstByte = resolve; });
    const first = chatCall(url, keyA, body(LONG), { onFirstByte: () => firstByte() });
    await streaming; // alice now pins the only lock-pool client

    const second = await chatCall(url, keyB, body(SHORT), { timeoutMs: 10_000 });
    const waitedMs = second.endedAtMs - second.sentAtMs;
    assert.strictEqual(second.status, 503, second.body);
    // A full pool frees within about one acquire wait: Retry-After follows it, not the
    // (much longer) lock timeout.
    assert.strictEqual(second.retryAfter, String(Math.max(1, Math.ceil(ACQUIRE_TIMEOUT_MS / 1000))), 'Retry-After follows the acquire timeout');
    assert.true(waitedMs >= ACQUIRE_TIMEOUT_MS - 50 && waitedMs < ACQUIRE_TIMEOUT_MS + 1_500, `answered after ${waitedMs.toFixed(0)} ms (acquire timeout ${ACQUIRE_TIMEOUT_MS} ms)`);

    const a = await first;
    assert.strictEqual(a.status, 200);
    assert.true(a.body.trimEnd().endsWith('data: [DONE]'), 'the first stream was not disturbed');
    assert.true(second.endedAtMs < a.endedAtMs, 'bob was answered while alice still streamed');
    // pg-pool's own connect timer fires strictly after acquireClient's deadline (pools.ts), so
    // a full pool is reported as such, not as a database outage.
    assert.deepEqual({
      code: second.errorCode, poolTimeout: second.body.includes('pool_timeout'),
      counted: await scrapeMetric(url, 'metergate_barrier_busy_total', { reason: 'pool_timeout' }),
    }, { code: 'barrier_busy', poolTimeout: true, counted: 1 }, 'reported and counted as barrier_busy (pool_timeout), not as a database outage');

    // Once the client is free again, bob gets through: nothing stays wedged.
    const retry = await chatCall(url, keyB, body(SHORT));
    assert.strictEqual(retry.status, 200, retry.body);
    await f.sim.whenIdle(10_000);
    assert.strictEqual(f.sim.generations().filter((g) => g.user === 'bob').length, 1, 'the refused call never reached upstream');
    for (const user of ['alice', 'bob']) {
      const billed = f.sim.billedNano({ user });
      assert.strictEqual(await eventually(() => ledgerUsageNano(f.pool, user), (v) => v === billed), billed, `${user}: books exact`);
    }
  });
});
