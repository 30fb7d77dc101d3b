// The bounded in-memory retry used by the settler and the idempotency key writer (hardening
// item 14): transient errors retried with backoff, permanent ones and exhausted or overflowing
// entries handed off (once each, with the last error), and a gauge of what is pending.
import { pino } from 'pino';
import { createMetrics } from '../src/metrics.js';
import { RetryQueue, type GiveUpReason } from '../src/billing/retry-queue.js';

const unavailable = () => Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
const uniqueViolation = () => Object.assign(new Error('duplicate key'), { code: '23505' });

function setup(limits: { entriesMax: number; attemptsMax: number }) {
  const metrics = createMetrics({ queueDepth: () => 0, pinnedClients: () => 0, poolClients: () => [], unsettled: () => [], priceBookModels: () => 0 });
  const handedOff: Array<{ id: string; reason: GiveUpReason; error: unknown }> = [];
  const queue = new RetryQueue({
    name: 'settle', ...limits, delaysMs: [5, 10],
    handOff: async (id, reason, error) => { handedOff.push({ id, reason, error }); },
  }, metrics, pino({ level: 'silent' }));
  const gauge = async (name: string, labels: Record<string, string>) => {
    const metric = await metrics.registry.getSingleMetric(name)!.get();
    return metric.values.filter((v) => Object.entries(labels).every(([k, l]) => (v.labels as Record<string, string>)[k] === l))
      .reduce((sum, v) => sum + v.value, 0);
  };
  return { queue, handedOff, gauge };
}

function until(predicate: () => boolean, timeoutMs = 2_000): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const check = () => {
      if (predicate()) resolve();
      else if (Date.now() - started > timeoutMs) reject(new Error('condition not met in time'));
      else setTimeout(check, 5);
    };
    check();
  });
}

QUnit.module('retry queue', () => {
  QUnit.test('a transient failure is retried until it lands; the gauge follows', async (assert) => {
    const { queue, handedOff, gauge } = setup({ entriesMax: 10, attemptsMax: 5 });
    let calls = 0;
    queue.defer('a', async () => { calls += 1; if (calls < 3) throw unavailable(); }, unavailable());
    assert.strictEqual(queue.size, 1);
    assert.strictEqual(await gauge('metergate_retry_pending', { queue: 'settle' }), 1, 'pending gauge');
    await until(() => queue.size === 0);
    assert.strictEqual(calls, 3, 'two failed retries, then it landed');
    assert.deepEqual(handedOff, [], 'nothing handed off');
    assert.strictEqual(await gauge('metergate_retry_pending', { queue: 'settle' }), 0);
  });

  QUnit.test('attempts are bounded: after attemptsMax retries it is handed off with the last error', async (assert) => {
    const { queue, handedOff, gauge } = setup({ entriesMax: 10, attemptsMax: 3 });
    let calls = 0;
    const last = unavailable();
    queue.defer('b', async () => { calls += 1; throw calls === 3 ? last : unavailable(); }, unavailable());
    await until(() => handedOff.length === 1);
    assert.strictEqual(calls, 3, 'exactly attemptsMax retries');
    assert.strictEqual(handedOff[0]!.reason, 'attempts');
    assert.strictEqual(handedOff[0]!.error, last, 'with the last error');
    assert.strictEqual(queue.size, 0, 'no longer kept in memory');
    assert.strictEqual(await gauge('metergate_retry_given_up_total', { queue: 'settle', reason: 'attempts' }), 1, 'counted');
  });

  QUnit.test('a permanent error is not retried; past entriesMax a failure is handed off at once', async (assert) => {
    const { queue, handedOff } = setup({ entriesMax: 2, attemptsMax: 100 });
    let permanentCalls = 0;
    queue.defer('bug', async () => { permanentCalls += 1; }, uniqueViolation());
    assert.deepEqual(handedOff.map((h) => [h.id, h.reason]), [['bug', 'permanent']], 'a constraint violation is handed off at once');
    const never = async () => { throw unavailable(); };
    queue.defer('c1', never, unavailable());
    queue.defer('c2', never, unavailable());
    queue.defer('c3', never, unavailable());
    assert.strictEqual(queue.size, 2, 'at most entriesMax kept');
    assert.deepEqual(handedOff.map((h) => [h.id, h.reason]).slice(1), [['c3', 'full']], 'the one over the limit handed off');
    queue.defer('c1', never, unavailable());
    assert.strictEqual(queue.size, 2, 'deferring an entry already kept replaces it');
    queue.stop();
    assert.strictEqual(queue.size, 0, 'stop drops the timers (the rows stay for the reconciler)');
    assert.strictEqual(permanentCalls, 0, 'the permanent failure was never run again');
  });
});
