// No dead ends: an operator closes a stuck (unresolved / awaiting_cost) request, exactly once,
// releasing its hold — by CLI and by the admin API; live or closed requests are refused.
import { randomUUID } from 'node:crypto';
import { formatNano, ledger, requests, users, usdTextToNano } from '@metergate/db';
import { createTestDatabase, startStack, type TestDatabase } from '@metergate/testkit';
import { like, runCli, type CliResult } from './run-cli.js';

async function openWithHold(db: TestDatabase['pool'], userId: string, holdNano: bigint): Promise<string> {
  const id = randomUUID();
  const admitted = await requests.admitRequest(db, { id, userId, replicaId: 'resolve-test', model: 'm/x', stream: false }, {
    minBalanceNano: 0n, upstreamHoldNano: holdNano, holdCompletionTokens: 10,
  });
  if (!admitted.admitted) throw new Error('not admitted');
  return id;
}

QUnit.module('closing stuck requests by hand (CLI and admin API)', (hooks) => {
  let db: TestDatabase;
  let cli: (...args: string[]) => Promise<CliResult>;
  hooks.before(async () => {
    db = await createTestDatabase();
    cli = (...args) => runCli(args, { DATABASE_URL: db.url });
    await users.insertUser(db.pool, 'stuck');
    await ledger.appendCredit(db.pool, { userId: 'stuck', kind: 'grant', amountNano: usdTextToNano('1.00'), note: null });
  });
  hooks.after(async () => { await db.drop(); });

  QUnit.test('settle-request charges an unresolved request once and releases its hold; in_flight and settled ones are refused', async (assert) => {
    const id = await openWithHold(db.pool, 'stuck', 5_000_000n);
    assert.strictEqual((await users.getUser(db.pool, 'stuck'))!.heldNano.toString(), '5000000', 'held while open');
    const live = await cli('settle-request', id, '0.001');
    assert.strictEqual(live.code, 4, 'an in_flight request belongs to its replica: conflict');
    like(assert, live.stderr, /is in_flight/);
    await requests.markUnresolved(db.pool, id, 'owner_died_before_generation_id');
    const settled = await cli('settle-request', id, '0.001', '--note', 'from the provider invoice', '--json');
    assert.strictEqual(settled.code, 0, settled.stderr);
    const entry = JSON.parse(settled.stdout) as { amount_usd: string; request_id: string };
    assert.deepEqual([entry.amount_usd, entry.request_id], [formatNano(-usdTextToNano('0.001')), id]);
    const user = (await users.getUser(db.pool, 'stuck'))!;
    assert.deepEqual([user.heldNano.toString(), user.balanceNano.toString()], ['0', (usdTextToNano('1.00') - usdTextToNano('0.001')).toString()]);
    const again = await cli('settle-request', id, '0.001');
    assert.strictEqual(again.code, 4, 'exactly once');
    assert.strictEqual((await cli('settle-request', randomUUID(), '0.001')).code, 3, 'unknown request: not found');
    assert.strictEqual((await cli('settle-request', 'nope', '0.001')).code, 2, 'not a UUID: usage');
    assert.strictEqual((await cli('settle-request', id, '-1')).code, 2, 'a negative cost: usage');
  });

  QUnit.test('void-request closes without a charge and releases the hold, once; a note is required', async (assert) => {
    const id = await openWithHold(db.pool, 'stuck', 7_000n);
    await requests.markUnresolved(db.pool, id, 'cost_lookup_exhausted');
    const before = (await users.getUser(db.pool, 'stuck'))!;
    assert.strictEqual((await cli('void-request', id)).code, 2, 'the note is required');
    const voided = await cli('void-request', id, '--note', 'provider confirmed no charge');
    assert.strictEqual(voided.code, 0, voided.stderr);
    const after = (await users.getUser(db.pool, 'stuck'))!;
    assert.deepEqual([after.balanceNano.toString(), after.heldNano.toString()], [before.balanceNano.toString(), (before.heldNano - 7_000n).toString()]);
    assert.strictEqual((await requests.getRequest(db.pool, id))!.state, 'voided');
    assert.strictEqual((await cli('void-request', id, '--note', 'twice')).code, 4, 'exactly once');
  });

  QUnit.test('prices: pin (exact USD strings), list, unpin; a bad price exits 2 and pins nothing', async (assert) => {
    const bad = await cli('prices', 'pin', 'v/m', '--prompt', '-1', '--completion', '0.000002');
    assert.strictEqual(bad.code, 2, bad.stderr);
    const pinned = await cli('prices', 'pin', 'v/m', '--prompt', '0.0000000005', '--completion', '0.000002', '--context-length', '8000', '--json');
    assert.strictEqual(pinned.code, 0, pinned.stderr);
    const row = JSON.parse(pinned.stdout) as { prompt: string; completion: string; source: string; context_length: number };
    assert.deepEqual([row.prompt, row.completion, row.source, row.context_length], ['0.0000000005', '0.000002', 'operator', 8000], 'below one nano-USD per token, kept exactly');
    const listed = JSON.parse((await cli('prices', 'list', '--json')).stdout) as { data: Array<{ model: string }> };
    assert.deepEqual(listed.data.map((p) => p.model), ['v/m']);
    assert.strictEqual((await cli('prices', 'unpin', 'v/m')).code, 0);
    assert.strictEqual((await cli('prices', 'unpin', 'v/m')).code, 3, 'nothing left to unpin');
  });

  QUnit.test('admin API: POST /admin/requests/:id/settle and /void, same rules, OpenAI-shaped errors', async (assert) => {
    const stack = await startStack();
    try {
      await stack.createUser('api-stuck', '1.00');
      const a = await openWithHold(stack.db.pool, 'api-stuck', 3_000n);
      const b = await openWithHold(stack.db.pool, 'api-stuck', 4_000n);
      const refused = await stack.admin('POST', `/admin/requests/${a}/settle`, { upstream_cost_usd: '0.000002' });
      assert.strictEqual(refused.status, 409, 'in_flight is refused');
      await requests.markUnresolved(stack.db.pool, a, 'x');
      await requests.markUnresolved(stack.db.pool, b, 'x');
      assert.strictEqual((await stack.admin('POST', `/admin/requests/${a}/settle`, { upstream_cost_usd: 0.000002 })).status, 400, 'a JSON number is refused');
      assert.strictEqual((await stack.admin('POST', `/admin/requests/${a}/settle`, {})).status, 400, 'the bill is required');
      const twoNames = await stack.admin('POST', `/admin/requests/${a}/settle`, { upstream_cost_usd: '0.000002', cost_usd: '0.000003' });
      assert.strictEqual(twoNames.status, 400, 'the old and new names disagreeing is refused, not guessed');
      // cost_usd is the field's old name, still accepted until 0.2.
      const settled = await stack.admin('POST', `/admin/requests/${a}/settle`, { cost_usd: '0.000002' });
      assert.strictEqual(settled.status, 201, await settled.clone().text());
      assert.strictEqual((await stack.admin('POST', `/admin/requests/${a}/settle`, { upstream_cost_usd: '0.000002' })).status, 409, 'once');
      const voided = await stack.admin('POST', `/admin/requests/${b}/void`, { note: 'no charge' });
      assert.strictEqual(voided.status, 200, await voided.clone().text());
      assert.strictEqual((await stack.admin('POST', `/admin/requests/${randomUUID()}/void`, { note: 'x' })).status, 404);
      const view = await (await stack.admin('GET', '/admin/users/api-stuck')).json() as { held_usd: string; available_usd: string; balance_usd: string };
      assert.deepEqual([view.held_usd, view.available_usd], [formatNano(0n), view.balance_usd], 'no hold left; available = balance');
    } finally {
      await stack.close();
    }
  });
});
