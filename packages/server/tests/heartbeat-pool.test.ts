// The heartbeat has a database client of its own: with every write-pool client pinned (here
// by a CSV export whose reader has stopped), the replica's beats keep landing, so no other
// replica takes it for dead and reconciles its live calls.
import { eventually, startStack, type TestStack } from '@metergate/testkit';

async function heartbeatAt(stack: TestStack): Promise<number> {
  const { rows } = await stack.db.pool.query<{ at: Date }>('select heartbeat_at as at from replicas where id = $1::text',
    [stack.runtime.services.config.replicaId]);
  return rows[0]!.at.getTime();
}

QUnit.module('heartbeat on its own client', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => {
    stack = await startStack({ env: { WRITE_POOL_SIZE: '1', HEARTBEAT_INTERVAL_MS: '100', REPLICA_LEASE_MS: '400', POOL_ACQUIRE_TIMEOUT_MS: '200' } });
    // Enough ledger rows that the export cannot finish into the socket buffers.
    await stack.createUser('bulk', '1.00');
    await stack.db.pool.query(`insert into ledger_entries (user_id, kind, amount_nano, balance_after_nano, note)
      select 'bulk', 'adjustment', 1, 0, repeat('x', 200) from generate_series(1, 60000)`);
  });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('beats land for several leases while the one write client is pinned by a stalled export', async (assert) => {
    const controller = new AbortController();
    const response = await fetch(`${stack.url}/admin/ledger?format=csv`, { headers: { authorization: `Bearer ${stack.adminToken}` }, signal: controller.signal });
    assert.strictEqual(response.status, 200);
    await response.body!.getReader().read(); // started; then nothing is read: backpressure pins the client
    try {
      const pool = stack.runtime.services.pools.write;
      await eventually(async () => pool.totalCount - pool.idleCount, (busy) => busy === 1, 5_000);
      const before = await heartbeatAt(stack);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      assert.strictEqual(pool.totalCount - pool.idleCount, 1, 'the write pool is still fully pinned');
      const after = await heartbeatAt(stack);
      assert.true(after - before >= 1_000, `the heartbeat kept landing (${after - before} ms of beats in 1.5 s)`);
      assert.true(Date.now() - after < 400, 'and is within the lease now');
    } finally {
      controller.abort();
    }
  });
});
