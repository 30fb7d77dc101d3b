import {
  balanceBreaches, chatCall, eventually, ledgerUsageNano, startEmbeddedCluster, startSimCluster,
  type ChatResult, type EmbeddedCluster, type SimCluster,
} from '@metergate/testkit';

// A Postgres of the test's own, restarted under two running replicas. While it is down every
// call fails closed (503, never a call to upstream that cannot be metered); once it is back the
// replicas recover by themselves, and a stream that was running across the restart is billed.
const POOL_ACQUIRE_TIMEOUT_MS = 1_000;
const DOWN_ANSWER_MS_MAX = 5_000;
const RECOVER_MS_MAX = 20_000;
const LONG = { latency_ms: 10, chunk_delay_ms: 50, completion_tokens: 30 }; // ~1.5 s stream
const SHORT = { latency_ms: 5, chunk_delay_ms: 1, completion_tokens: 4 };
const body = (sim: Record<string, number>) => ({ model: 'openai/gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hello' }], sim });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

QUnit.module('faults: Postgres restarted mid-run', (hooks) => {
  let pg: EmbeddedCluster;
  let f: SimCluster;
  hooks.before(async () => {
    pg = await startEmbeddedCluster();
    try {
      f = await startSimCluster({
        replicas: 2, databaseUrl: pg.url,
        env: { LOG_LEVEL: 'warn', POOL_ACQUIRE_TIMEOUT_MS: String(POOL_ACQUIRE_TIMEOUT_MS), LOCK_TIMEOUT_MS: '5000', STATEMENT_TIMEOUT_MS: '5000' },
      });
    } catch (error) {
      await pg.destroy();
      throw error;
    }
  });
  hooks.after(async () => {
    await f?.close();
    await pg?.destroy();
  });

  QUnit.test('calls fail closed with 503 while it is down and succeed again after, with exact books', async (assert) => {
    const { cluster, sim } = f;
    const keys = await Promise.all(['dora', 'emil'].map((id) => cluster.createUser(id, 1_000_000_000n)));
    const before = await Promise.all(cluster.urls.map((url, i) => chatCall(url, keys[i]!, body(SHORT))));
    assert.deepEqual(before.map((r) => r.status), [200, 200], 'both replicas serve before the restart');

    // A stream in flight across the restart: its holder session dies with the server.
    let firstByte!: () => void;
    const streaming = new Promise<void>((resolve) => { firstByte = resolve; });
    const across = chatCall(cluster.urls[0]!, keys[0]!, body(LONG), { onFirstByte: () => firstByte() });
    await streaming;
    await pg.stop();
    const generationsBefore = sim.generations().length;

    const down: ChatResult[] = [];
    for (let round = 0; round < 3; round += 1) {
      down.push(...await Promise.all(cluster.urls.map((url, i) => chatCall(url, keys[i]!, body(SHORT), { timeoutMs: 15_000 }))));
      await sleep(200);
    }
    for (const result of down) {
      const waited = result.endedAtMs - result.sentAtMs;
      assert.strictEqual(result.status, 503, `down: ${result.status} ${result.body.slice(0, 200)}`);
      assert.true(result.errorCode === 'database_unavailable' || result.errorCode === 'barrier_busy', `code ${result.errorCode}`);
      assert.true(result.retryAfter !== null, 'with Retry-After');
      assert.true(waited < DOWN_ANSWER_MS_MAX, `answered in ${waited.toFixed(0)} ms, no hang`);
    }
    const ready = await Promise.all(cluster.urls.map(async (url) => (await fetch(`${url}/readyz`)).status));
    assert.deepEqual(ready, [503, 503], '/readyz says not ready');
    const across200 = await across;
    assert.strictEqual(across200.status, 200, 'the stream running across the restart still reached its client');
    assert.true(across200.body.trimEnd().endsWith('data: [DONE]'), 'in full');
    assert.strictEqual(sim.generations().length, generationsBefore, 'no call reached upstream while the database was down');

    await pg.start();
    const started = Date.now();
    const recovered = await Promise.all(cluster.urls.map((url, i) => eventually(
      () => chatCall(url, keys[i]!, body(SHORT), { timeoutMs: 10_000 }), (r) => r.status === 200, RECOVER_MS_MAX)));
    assert.deepEqual(recovered.map((r) => r.status), [200, 200], `both replicas serve again after ${Date.now() - started} ms, no restart`);
    assert.true(cluster.replicas.every((replica) => replica.child.exitCode === null && replica.child.signalCode === null), 'same processes');

    await sim.whenIdle(10_000);
    for (const user of ['dora', 'emil']) {
      const billed = sim.billedNano({ user });
      // The stream across the restart settles from memory once the database is back.
      const ledger = await eventually(() => ledgerUsageNano(f.pool, user).catch(() => -1n), (v) => v === billed, RECOVER_MS_MAX);
      assert.strictEqual(ledger, billed, `${user}: ledger = simulator books`);
    }
    assert.deepEqual(await balanceBreaches(f.pool), []);
  });
});
