// The heartbeat has a database client of its own: with every write-pool client pinned (here
// by an admission waiting for its user's lock, which the test holds), the replica's beats
// keep landing, so no other replica takes it for dead and reconciles its live calls.
import { costLockKey } from '@metergate/db';
import { eventually, startStack, type TestStack } from '@metergate/testkit';

async function heartbeatAt(stack: TestStack): Promise<number> {
  const { rows } = await stack.db.pool.query<{ at: Date }>('select heartbeat_at as at from replicas where id = $1::text',
    [stack.runtime.services.config.replicaId]);
  return rows[0]!.at.getTime();
}

QUnit.module('heartbeat on its own client', (hooks) => {
  let stack: TestStack;
  let key: string;
  hooks.before(async () => {
    stack = await startStack({ env: {
      WRITE_POOL_SIZE: '1', BARRIER: 'reserve', HEARTBEAT_INTERVAL_MS: '100', REPLICA_LEASE_MS: '400', POOL_ACQUIRE_TIMEOUT_MS: '200',
    } });
    key = await stack.createUser('pinned', '1.00');
  });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('beats land for several leases while the one write client is pinned by a blocked admission', async (assert) => {
    // The user's cost lock, held here: the admission statement (which takes it) waits on it.
    const locker = await stack.db.pool.connect();
    await locker.query('select pg_advisory_lock($1::bigint)', [costLockKey('pinned').toString()]);
    const call = fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 16 }),
      signal: AbortSignal.timeout(15_000),
    });
    try {
      const pool = stack.runtime.services.pools.write;
      const waiting = async () => (await stack.db.pool.query<{ n: number }>(
        `select count(*)::integer as n from pg_stat_activity where wait_event_type = 'Lock' and wait_event = 'advisory'`)).rows[0]!.n;
      await eventually(waiting, (n) => n === 1, 5_000);
      const before = await heartbeatAt(stack);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      assert.strictEqual(pool.totalCount - pool.idleCount, 1, 'the write pool is still fully pinned');
      assert.strictEqual(await waiting(), 1, 'by the admission waiting for the lock');
      const after = await heartbeatAt(stack);
      assert.true(after - before >= 1_000, `the heartbeat kept landing (${after - before} ms of beats in 1.5 s)`);
      assert.true(Date.now() - after < 400, 'and is within the lease now');
    } finally {
      await locker.query('select pg_advisory_unlock($1::bigint)', [costLockKey('pinned').toString()]);
      locker.release();
    }
    const response = await call;
    assert.strictEqual(response.status, 200, 'the call proceeds once the lock is free');
    await response.arrayBuffer();
  });
});
