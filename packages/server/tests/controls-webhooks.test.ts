// Webhooks (issue 13) against a real local HTTP receiver: events are written with their cause,
// one balance.low per threshold crossing, signed deliveries, nothing lost while the receiver is down.
import { eventually, freePort, startStack, startWebhookReceiver, type TestStack, type WebhookReceiver } from '@metergate/testkit';
import { requests } from '@metergate/db';
import { verifySignature } from '../src/webhooks/signature.js';
import { assertOpenAiError, chat, messages } from './helpers.js';

const SECRET = 'whsec-test-0123456789abcdef';
const ENV = { WEBHOOK_DELIVERY_INTERVAL_MS: '100', WEBHOOK_BACKOFF_MS: '100', WEBHOOK_BACKOFF_MAX_MS: '400', WEBHOOK_TIMEOUT_MS: '2000' };

interface Event { id: string; type: string; created_at: string; data: Record<string, unknown> }

function eventsOf(receiver: WebhookReceiver): Event[] {
  return receiver.received.map((hook) => JSON.parse(hook.body) as Event);
}

async function credit(stack: TestStack, user: string, amount: string, kind = 'adjustment'): Promise<void> {
  const response = await stack.admin('POST', `/admin/users/${user}/credits`, { amount_usd: amount, kind });
  if (response.status !== 201) throw new Error(`credit ${amount}: ${response.status} ${await response.text()}`);
}

QUnit.module('webhooks', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack({ env: ENV }); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('balance.low: exactly one event per crossing (adjustments and a settle); signed; credits.granted', async (assert) => {
    const receiver = await startWebhookReceiver();
    try {
      const created = await stack.admin('POST', '/admin/webhooks', { url: receiver.url, secret: SECRET, events: ['balance.low', 'credits.granted'] });
      assert.strictEqual(created.status, 201);
      const hook = await created.json() as Record<string, unknown>;
      assert.false('secret' in hook, 'the secret is not returned');
      const listed = await (await stack.admin('GET', '/admin/webhooks')).json() as { data: Array<Record<string, unknown>> };
      assert.false(listed.data.some((h) => 'secret' in h), 'nor listed');
      const user = 'low-user';
      const key = await stack.createUser(user, '0');
      assert.strictEqual((await stack.admin('PUT', `/admin/users/${user}/alerts`, { balance_below_usd: '0.50' })).status, 200);
      await credit(stack, user, '1.00', 'grant');            // credits.granted
      await credit(stack, user, '-0.30');                    // 0.70: above
      await credit(stack, user, '-0.30');                    // 0.40: crossing 1
      await credit(stack, user, '-0.05');                    // 0.35: still below, no event
      await credit(stack, user, '0.1505');                   // 0.5005: back above
      // gpt-4o, 150 output tokens cost about $0.0015: this call's settle crosses 0.50 (crossing 2).
      assert.strictEqual((await chat(stack, key, { model: 'openai/gpt-4o', max_tokens: 200, messages: messages(), sim: { completion_tokens: 150 } })).status, 200);
      const { rows } = await stack.db.pool.query<{ b: string }>('select balance_nano::text as b from users where id = $1::text', [user]);
      const afterCall = BigInt(rows[0]!.b);
      assert.true(afterCall < 500_000_000n, 'the call took the balance below the threshold');
      const expectedLow = 2;
      await eventually(async () => eventsOf(receiver).filter((e) => e.type === 'balance.low').length, (n) => n >= expectedLow, 10_000);
      await new Promise((resolve) => setTimeout(resolve, 500)); // no late duplicates
      const events = eventsOf(receiver);
      const low = events.filter((e) => e.type === 'balance.low');
      assert.strictEqual(low.length, expectedLow, `one balance.low per crossing (${low.map((e) => e.data.balance_usd).join(', ')})`);
      assert.strictEqual(low[0]!.data.balance_usd, '0.400000000');
      assert.strictEqual(low[0]!.data.threshold_usd, '0.500000000');
      assert.strictEqual(low[1]!.data.balance_usd, `0.${afterCall.toString().padStart(9, '0')}`, 'the settle\'s crossing, with the balance after it');
      assert.deepEqual(events.filter((e) => e.type === 'credits.granted').map((e) => e.data.amount_usd), ['1.000000000']);
      for (const received of receiver.received) {
        const signature = received.headers['metergate-signature'] as string;
        assert.true(verifySignature(SECRET, signature, received.body), 'signature verifies');
        assert.false(verifySignature('another-secret-0123456789', signature, received.body), 'not with another secret');
        assert.strictEqual(received.headers['metergate-event-id'], (JSON.parse(received.body) as Event).id);
      }
      const deliveries = await (await stack.admin('GET', `/admin/webhooks/${String(hook.id)}/deliveries`)).json() as { data: Array<Record<string, unknown>> };
      assert.true(deliveries.data.length === events.length && deliveries.data.every((d) => d.state === 'delivered' && d.last_status === 200), 'the delivery log');
      assert.strictEqual((await stack.admin('DELETE', `/admin/webhooks/${String(hook.id)}`)).status, 200);
    } finally {
      await receiver.close();
    }
  });

  QUnit.test('receiver down, then up: every event arrives (retried with backoff, logged)', async (assert) => {
    const port = await freePort();
    const created = await stack.admin('POST', '/admin/webhooks', { url: `http://127.0.0.1:${port}/hooks`, secret: SECRET, events: ['credits.granted'] });
    const hook = await created.json() as { id: string };
    const user = 'down-user';
    await stack.createUser(user, '0');
    for (let i = 1; i <= 5; i += 1) await credit(stack, user, `0.0${i}`, 'grant');
    const failing = await eventually(async () => (await (await stack.admin('GET', `/admin/webhooks/${hook.id}/deliveries`)).json()) as { data: Array<{ attempts: number; last_error: string | null; state: string }> },
      (body) => body.data.length === 5 && body.data.every((d) => d.attempts >= 2), 10_000);
    assert.true(failing.data.every((d) => d.state === 'pending' && d.last_error !== null), 'still pending, errors logged');
    const receiver = await startWebhookReceiver(port);
    try {
      await eventually(async () => new Set(eventsOf(receiver).map((e) => e.id)).size, (n) => n === 5, 10_000);
      assert.deepEqual(eventsOf(receiver).map((e) => e.data.amount_usd).sort(), ['0.010000000', '0.020000000', '0.030000000', '0.040000000', '0.050000000']);
      const done = await eventually(async () => (await (await stack.admin('GET', `/admin/webhooks/${hook.id}/deliveries`)).json()) as { data: Array<{ state: string }> },
        (body) => body.data.every((d) => d.state === 'delivered'), 5_000);
      assert.strictEqual(done.data.length, 5);
    } finally {
      await receiver.close();
      await stack.admin('DELETE', `/admin/webhooks/${hook.id}`);
    }
  });

  QUnit.test('limit.reached once per limit and period; request.unresolved once per request', async (assert) => {
    const receiver = await startWebhookReceiver();
    const created = await stack.admin('POST', '/admin/webhooks', { url: receiver.url, secret: SECRET, events: ['limit.reached', 'request.unresolved'] });
    const hook = await created.json() as { id: string };
    try {
      const user = 'reached-user';
      const key = await stack.createUser(user, '1.00');
      assert.strictEqual((await stack.admin('PUT', `/admin/users/${user}/limits`, { spend: [{ amount_usd: '0.000001', period: 'week' }] })).status, 200);
      const body = { model: 'openai/gpt-4o-mini', max_tokens: 20, messages: messages(), sim: { completion_tokens: 5 } };
      const statuses: number[] = [];
      for (let i = 0; i < 3; i += 1) {
        const response = await chat(stack, key, body);
        statuses.push(response.status);
        await response.text();
      }
      // Serialize: spent (0) + held (0) < limit admits the first call; its charge uses the room up.
      assert.deepEqual(statuses, [200, 402, 402]);
      const id = '00000000-0000-4000-8000-0000000000aa';
      await requests.insertRequest(stack.db.pool, { id, userId: user, replicaId: 'test', model: 'm/x', stream: false });
      assert.true(await requests.markUnresolved(stack.db.pool, id, 'test_reason'));
      assert.true(await requests.markUnresolved(stack.db.pool, id, 'test_reason_again'), 'still unresolved, reason updated');
      await eventually(async () => eventsOf(receiver).length, (n) => n >= 2, 10_000);
      await new Promise((resolve) => setTimeout(resolve, 500)); // no late duplicates
      const events = eventsOf(receiver);
      const reached = events.filter((e) => e.type === 'limit.reached');
      assert.strictEqual(reached.length, 1, 'two refusals in the period: one limit.reached');
      assert.deepEqual([reached[0]!.data.scope, reached[0]!.data.id, reached[0]!.data.period, reached[0]!.data.amount_usd], ['user', user, 'week', '0.000001000']);
      const unresolved = events.filter((e) => e.type === 'request.unresolved');
      assert.deepEqual(unresolved.map((e) => [e.data.request_id, e.data.reason]), [[id, 'test_reason']], 'one event when it became unresolved');
    } finally {
      await receiver.close();
      await stack.admin('DELETE', `/admin/webhooks/${hook.id}`);
    }
  });

  QUnit.test('bad input: 400s; unknown webhook 404', async (assert) => {
    await assertOpenAiError(assert, await stack.admin('POST', '/admin/webhooks', { url: 'ftp://x', secret: SECRET, events: ['balance.low'] }), 400, 'invalid_request');
    await assertOpenAiError(assert, await stack.admin('POST', '/admin/webhooks', { url: 'http://127.0.0.1:1/x', secret: 'short', events: ['balance.low'] }), 400, 'invalid_request');
    await assertOpenAiError(assert, await stack.admin('POST', '/admin/webhooks', { url: 'http://127.0.0.1:1/x', secret: SECRET, events: ['nope'] }), 400, 'invalid_request');
    await assertOpenAiError(assert, await stack.admin('PUT', '/admin/users/nobody/alerts', { balance_below_usd: '1' }), 404, 'not_found');
    await assertOpenAiError(assert, await stack.admin('PUT', '/admin/users/nobody/alerts', { balance_below_usd: 1 }), 400, 'invalid_request');
    await assertOpenAiError(assert, await stack.admin('GET', '/admin/webhooks/nope/deliveries'), 404, 'not_found');
    await assertOpenAiError(assert, await stack.admin('DELETE', '/admin/webhooks/nope'), 404, 'not_found');
  });
});
