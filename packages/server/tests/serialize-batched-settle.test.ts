// Serialize mode under concurrency: a settle that starts while others are under way joins the
// batched settles instead of committing with its lock transaction. The lock is still freed only
// after the settle has committed: one user's calls never overlap upstream, every debit lands
// once, and the books are exact.
import { verify } from '@metergate/db';
import { startStack, type TestStack } from '@metergate/testkit';
import { assertBooks, chat, generationsOf, messages } from './helpers.js';

const USERS = 12;
const CALLS_PER_USER = 3;

async function settleBatches(stack: TestStack): Promise<{ statements: number; settles: number }> {
  const metric = await stack.runtime.services.metrics.statementBatchSize.get();
  const of = (suffix: string) => metric.values.find((v) => v.labels.kind === 'settle' && v.metricName === `metergate_statement_batch_size_${suffix}`)?.value ?? 0;
  return { statements: of('count'), settles: of('sum') };
}

QUnit.module('serialize: settles batched under load', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack({ env: { BARRIER: 'serialize', LOG_LEVEL: 'warn' } }); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test(`${USERS} users × ${CALLS_PER_USER} calls at once: batched settles, calls of a user one after the other, exact books`, async (assert) => {
    const users = Array.from({ length: USERS }, (_, i) => `sb-user-${i}`);
    const keys = await Promise.all(users.map((user) => stack.createUser(user)));
    const body = { model: 'openai/gpt-4o', messages: messages(), sim: { latency_ms: 20, completion_tokens: 5 } };
    const statuses = await Promise.all(keys.flatMap((key) => Array.from({ length: CALLS_PER_USER }, async () => {
      const response = await chat(stack, key, body);
      await response.arrayBuffer();
      return response.status;
    })));
    assert.deepEqual([...new Set(statuses)], [200], 'every call answered 200');
    await stack.sim.whenIdle();
    const { statements, settles } = await settleBatches(stack);
    assert.true(settles > statements, `some settles shared a statement (${settles} settles in ${statements} batched statements)`);
    for (const user of users) {
      const generations = generationsOf(stack, user).sort((x, y) => x.startedAtMs - y.startedAtMs);
      assert.strictEqual(generations.length, CALLS_PER_USER);
      for (let i = 1; i < generations.length; i += 1) {
        assert.true(generations[i]!.startedAtMs >= generations[i - 1]!.endedAtMs!, `${user}: call ${i} started after call ${i - 1} ended`);
      }
      await assertBooks(assert, stack, user);
    }
    const report = await verify.verifyBooks(stack.db.pool, { staleInFlightMs: 86_400_000, sampleMax: 5, rollups: true });
    assert.true(report.ok, `verify --rollups is clean: ${JSON.stringify(report.breaches)}`);
  });
});
