// The cost barrier seen over HTTP: one user's calls reach the upstream one after the other
// and every debit lands; different users run side by side.
import { ledger } from '@metergate/db';
import { startStack, type TestStack } from '@metergate/testkit';
import { assertBooks, chat, generationsOf, messages, readSse } from './helpers.js';

QUnit.module('concurrency over HTTP', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  for (const stream of [false, true]) {
    QUnit.test(`two concurrent same-user calls (${stream ? 'stream' : 'json'}) reach the upstream one after the other; both debits land`, async (assert) => {
      const user = `same-${stream}`;
      const key = await stack.createUser(user);
      const body = { model: 'openai/gpt-4o', stream, messages: messages(), sim: { latency_ms: 150, chunk_delay_ms: 20, completion_tokens: 5 } };
      const [a, b] = await Promise.all([0, 1].map(async () => {
        const response = await chat(stack, key, body);
        return { status: response.status, text: stream ? (await readSse(response)).text : await response.text() };
      }));
      assert.strictEqual(a!.status, 200, a!.text);
      assert.strictEqual(b!.status, 200, b!.text);
      await stack.sim.whenIdle();
      const [first, second] = generationsOf(stack, user).sort((x, y) => x.startedAtMs - y.startedAtMs);
      assert.true(first !== undefined && second !== undefined, 'two generations');
      assert.true(second!.startedAtMs >= first!.endedAtMs!,
        `the second started ${Math.round(second!.startedAtMs - first!.endedAtMs!)} ms after the first ended`);
      const usage = (await ledger.listLedger(stack.db.pool, { userId: user, since: null, until: null, beforeId: null, limit: 10 }))
        .filter((entry) => entry.kind === 'usage');
      assert.strictEqual(usage.length, 2, 'two usage entries');
      assert.deepEqual(usage.map((entry) => entry.generationId).sort(), [first!.id, second!.id].sort(), 'one per generation');
      await assertBooks(assert, stack, user);
    });
  }

  QUnit.test('two different users run in parallel', async (assert) => {
    const users = ['par-a', 'par-b'];
    const keys = await Promise.all(users.map((user) => stack.createUser(user)));
    const body = { model: 'openai/gpt-4o', messages: messages(), sim: { latency_ms: 300 } };
    const responses = await Promise.all(keys.map((key) => chat(stack, key, body)));
    for (const response of responses) assert.strictEqual(response.status, 200, await response.text());
    await stack.sim.whenIdle();
    const [a, b] = users.map((user) => generationsOf(stack, user)[0]!);
    assert.true(a!.startedAtMs < b!.endedAtMs! && b!.startedAtMs < a!.endedAtMs!, 'the two generations overlapped');
    for (const user of users) await assertBooks(assert, stack, user);
  });
});
