// Hardening items 7 and 10: a settle can never mark a request settled without its ledger row
// (the pricing_settings row cannot go missing, and if it did the settle would fail whole); a
// same-user burst beyond the queue gets 402 when the user cannot afford it, not 503 busy.
import { randomUUID } from 'node:crypto';
import { ledger, requests } from '@metergate/db';
import { eventually, startStack, type TestStack } from '@metergate/testkit';
import { assertBooks, chat, messages } from './helpers.js';

QUnit.module('hardening: settle without a price row; bursts a user cannot afford', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => {
    // A small queue, so a burst of 30 overflows it.
    stack = await startStack({ env: { BARRIER_QUEUE_DEPTH_MAX: '4' } });
  });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('pricing_settings keeps its row; without it a settle fails whole instead of settling with no ledger row', async (assert) => {
    await assert.rejects(stack.db.pool.query('delete from pricing_settings'), /must keep its one row/, 'delete refused');
    await assert.rejects(stack.db.pool.query('truncate pricing_settings'), /must keep its one row/, 'truncate refused');
    await stack.createUser('no-price', '1.00');
    const id = randomUUID();
    await requests.insertRequest(stack.db.pool, { id, userId: 'no-price', replicaId: 'test', model: 'm', stream: false });
    const client = await stack.db.pool.connect();
    try {
      // Only by switching the guard off (in a transaction rolled back below) can the row go.
      await client.query('begin');
      await client.query('alter table pricing_settings disable trigger pricing_settings_keep_row');
      await client.query('delete from pricing_settings');
      await assert.rejects(ledger.settleUsage(client, { requestId: id, upstreamCostNano: 1_000n, generationId: null, promptTokens: null, completionTokens: null }),
        (error: { code?: string }) => error.code === '23502', 'the settle fails (not-null amount), nothing half-written');
    } finally {
      await client.query('rollback');
      client.release();
    }
    const row = await requests.getRequest(stack.db.pool, id);
    assert.strictEqual(row?.state, 'in_flight', 'the request is still open');
    const settled = await ledger.settleUsage(stack.db.pool, { requestId: id, upstreamCostNano: 1_000n, generationId: null, promptTokens: null, completionTokens: null });
    assert.strictEqual(settled?.amountNano.toString(), '-1000', 'with the row back, it settles normally');
  });

  QUnit.test('30 concurrent calls of a user with credit for a few, queue depth 4: every call 200 or 402, none 503', async (assert) => {
    // Credit for about 14 calls at their real cost, but under 3 at their worst case (50 output
    // tokens): a full queue of 4 cannot be afforded, so the overflow is 402, not 503.
    const key = await stack.createUser('burst', '0.0002');
    const body = { model: 'openai/gpt-4o-mini', max_tokens: 50, messages: messages(), sim: { latency_ms: 30, completion_tokens: 20 } };
    const statuses = await Promise.all(Array.from({ length: 30 }, async () => {
      const response = await chat(stack, key, body);
      await response.text();
      return response.status;
    }));
    const counts = new Map<number, number>();
    for (const status of statuses) counts.set(status, (counts.get(status) ?? 0) + 1);
    assert.deepEqual([...counts.keys()].filter((s) => s !== 200 && s !== 402), [], `only 200 and 402: ${JSON.stringify([...counts])}`);
    assert.true((counts.get(200) ?? 0) >= 1 && (counts.get(402) ?? 0) >= 1, 'some served, the rest refused for credit');
    await assertBooks(assert, stack, 'burst');
  });

  QUnit.test('an absurd max_tokens on a model without listed limits is held at CALL_COST_MAX_USD, not a 500', async (assert) => {
    const key = await stack.createUser('absurd-budget', '5.00');
    // A pinned price with neither context length nor output limit: only the client bounds the output.
    const pinned = await stack.admin('PUT', '/admin/prices', { model: 'vendor/unbounded', prompt: '0.00001', completion: '0.00001' });
    assert.strictEqual(pinned.status, 200, await pinned.clone().text());
    // 9e15 tokens × $0.00001: a worst case of ~9e10 USD, past what a Postgres bigint holds in nano-USD.
    const response = await chat(stack, key, { model: 'vendor/unbounded', max_tokens: 9_000_000_000_000_000, messages: messages() });
    const text = await response.text();
    assert.notStrictEqual(response.status, 500, `no internal error: ${text}`);
    // The simulator does not serve this model: relayed 400 before output, nothing charged, hold released.
    assert.strictEqual(response.status, 400, text);
    // The 400 reaches the client just before the request is closed (and its hold released).
    const row = await eventually(async () => (await stack.db.pool.query<{ held: string; hold: string | null }>(
      `select u.held_nano::text as held, (select max(hold_nano)::text from requests r where r.user_id = u.id) as hold
         from users u where u.id = 'absurd-budget'`)).rows[0], (r) => r?.held === '0', 5_000);
    assert.deepEqual(row, { held: '0', hold: (1_000n * 1_000_000_000n).toString() }, 'held at the CALL_COST_MAX_USD cap, then released');
  });
});
