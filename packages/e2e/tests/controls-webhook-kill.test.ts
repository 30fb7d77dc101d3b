import { eventually, startSimCluster, startWebhookReceiver, type SimCluster } from '@metergate/testkit';

// A replica killed (SIGKILL) while a webhook delivery it claimed is in flight loses nothing: the
// claim's lease (WEBHOOK_TIMEOUT_MS + interval) ends and the other replica delivers the same
// event (same Metergate-Event-Id), at least once.
const ENV = { LOG_LEVEL: 'warn', WEBHOOK_DELIVERY_INTERVAL_MS: '100', WEBHOOK_TIMEOUT_MS: '3000', WEBHOOK_BACKOFF_MS: '100', WEBHOOK_BACKOFF_MAX_MS: '400' };

QUnit.module('webhooks: replica killed mid-delivery', (hooks) => {
  let f: SimCluster;
  hooks.before(async () => { f = await startSimCluster({ replicas: 2, env: ENV }); });
  hooks.after(async () => { await f?.close(); });

  QUnit.test('the event is delivered by the survivor once the dead claim\'s lease ends', async (assert) => {
    const receiver = await startWebhookReceiver();
    // The first delivery is left hanging (the sender is killed while it waits); later ones get 200.
    receiver.respond = (_hook, index) => (index === 0 ? null : 200);
    try {
      const created = await f.cluster.admin('POST', '/admin/webhooks', { url: receiver.url, secret: 'whsec-kill-0123456789abcdef', events: ['credits.granted'] });
      assert.strictEqual(created.status, 201);
      await f.cluster.createUser('kill-hook', 1_000_000n);
      await eventually(async () => receiver.received.length, (n) => n >= 1, 10_000);
      const { rows } = await f.pool.query<{ claimed_by: string; event_id: string }>(`select claimed_by, event_id::text from webhook_deliveries`);
      assert.strictEqual(rows.length, 1);
      const victim = f.cluster.replicaIds.indexOf(rows[0]!.claimed_by);
      assert.true(victim >= 0, `claimed by a replica of the cluster (${rows[0]!.claimed_by})`);
      f.cluster.replicas[victim]!.kill('SIGKILL');
      await f.cluster.replicas[victim]!.exited;
      const delivered = await eventually(async () => (await f.pool.query<{ state: string; claimed_by: string; attempts: number }>(
        'select state, claimed_by, attempts from webhook_deliveries')).rows[0]!, (row) => row.state === 'delivered', 15_000);
      assert.strictEqual(delivered.claimed_by, f.cluster.replicaIds[1 - victim], 'the survivor delivered it');
      const ids = receiver.received.map((hook) => hook.headers['metergate-event-id']);
      assert.deepEqual(ids, [rows[0]!.event_id, rows[0]!.event_id], 'the same event id, twice (at-least-once)');
    } finally {
      await receiver.close();
    }
  });
});
