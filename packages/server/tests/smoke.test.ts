import { startStack, ledgerUsageNano, balanceBreaches } from '@metergate/testkit';

QUnit.module('smoke', () => {
  QUnit.test('streaming and non-streaming calls are billed exactly what the simulator billed', async (assert) => {
    const stack = await startStack();
    try {
      const key = await stack.createUser('alice', '1.00');
      const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
      const json = await fetch(`${stack.url}/v1/chat/completions`, { method: 'POST', headers, body: JSON.stringify({ model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'hi there' }] }) });
      assert.strictEqual(json.status, 200, await json.clone().text());
      const body = await json.json() as { usage: { cost: number } };
      assert.true(body.usage.cost > 0);
      const stream = await fetch(`${stack.url}/v1/chat/completions`, { method: 'POST', headers, body: JSON.stringify({ model: 'openai/gpt-4o', stream: true, messages: [{ role: 'user', content: 'hi' }] }) });
      const text = await stream.text();
      assert.true(text.trimEnd().endsWith('data: [DONE]'), text.slice(-200));
      await stack.sim.whenIdle();
      assert.strictEqual(await ledgerUsageNano(stack.db.pool, 'alice'), stack.sim.billedNano({ user: 'alice' }));
      assert.deepEqual(await balanceBreaches(stack.db.pool), []);
    } finally {
      await stack.close();
    }
  });
});
