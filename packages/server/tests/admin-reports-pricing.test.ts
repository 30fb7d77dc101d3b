import { formatNano, pricing } from '@metergate/db';
import { balanceBreaches, startStack, type TestStack } from '@metergate/testkit';
import { adminJson } from './admin-reports-fixtures.js';
import { assertOpenAiError, chat, messages } from './helpers.js';

type Entry = Record<string, string | number | null>;

QUnit.module('admin pricing API and priced billing, end to end', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('a default ×1.25 and an override ×1.5: each call charged ceil(upstream × multiplier), upstream kept', async (assert) => {
    const alice = await stack.createUser('price-alice', '5.00');
    const bob = await stack.createUser('price-bob', '5.00');
    const put = await stack.admin('PUT', '/admin/pricing', { default_multiplier: '1.25' });
    assert.strictEqual(put.status, 200);
    assert.strictEqual(((await put.json()) as Entry).default_multiplier, '1.250000');
    const override = await stack.admin('PUT', '/admin/users/price-bob/pricing', { multiplier: '1.5' });
    assert.deepEqual(await override.json(), { user_id: 'price-bob', multiplier: '1.500000', default_multiplier: '1.250000', effective_multiplier: '1.500000' });
    try {
      for (const [key, stream] of [[alice, false], [bob, true]] as const) {
        const response = await chat(stack, key, { model: 'openai/gpt-4o', stream, messages: messages(), sim: { completion_tokens: 7 } });
        assert.strictEqual(response.status, 200);
        await response.text();
      }
      await stack.sim.whenIdle();
      for (const [user, ppm] of [['price-alice', 1_250_000n], ['price-bob', 1_500_000n]] as const) {
        const upstream = stack.sim.billedNano({ user });
        assert.true(upstream > 0n, `${user} was billed upstream`);
        const { data } = await adminJson<{ data: Entry[] }>(stack, `/admin/ledger?user_id=${user}&kind=usage`);
        assert.strictEqual(data.length, 1);
        const charged = (upstream * ppm + 999_999n) / 1_000_000n;
        assert.deepEqual([data[0]!.upstream_cost_usd, data[0]!.charged_usd, data[0]!.amount_usd, data[0]!.multiplier],
          [formatNano(upstream), formatNano(charged), formatNano(-charged), pricing.formatMultiplier(ppm)], `${user}: ceil(${upstream} × ${ppm} / 1e6)`);
        const { data: usage } = await adminJson<{ data: Entry[] }>(stack, `/admin/usage?group_by=user&user_id=${user}`);
        assert.deepEqual(usage.map((u) => [u.key, u.requests, u.cost_usd, u.upstream_cost_usd]), [[user, 1, formatNano(charged), formatNano(upstream)]], 'the summary shows both, margin visible');
        const { data: users } = await adminJson<{ data: Entry[] }>(stack, '/admin/users?sort=id&limit=10');
        assert.strictEqual(users.find((u) => u.id === user)?.spend_usd, formatNano(charged));
      }
      assert.deepEqual(await balanceBreaches(stack.db.pool), []);
    } finally {
      await stack.admin('PUT', '/admin/pricing', { default_multiplier: '1' });
    }
    const cleared = await stack.admin('PUT', '/admin/users/price-bob/pricing', { multiplier: null });
    assert.deepEqual(await cleared.json(), { user_id: 'price-bob', multiplier: null, default_multiplier: '1.000000', effective_multiplier: '1.000000' });
    assert.strictEqual(((await adminJson<Entry>(stack, '/admin/pricing')).default_multiplier), '1.000000');
  });

  QUnit.test('bad multipliers are 400 naming the field; an unknown user is 404; no token is 401', async (assert) => {
    await stack.createUser('price-carol', '1.00');
    const bad: Array<[string, unknown, string]> = [
      ['/admin/pricing', { default_multiplier: 1.25 }, 'default_multiplier'],
      ['/admin/pricing', { default_multiplier: '0' }, 'default_multiplier'],
      ['/admin/pricing', { default_multiplier: '1.2345678' }, 'default_multiplier'],
      ['/admin/pricing', { default_multiplier: '-1' }, 'default_multiplier'],
      ['/admin/pricing', { default_multiplier: '5000' }, 'default_multiplier'],
      ['/admin/pricing', {}, 'default_multiplier'],
      ['/admin/pricing', { default_multiplier: '1', extra: true }, 'extra'],
      ['/admin/users/price-carol/pricing', { multiplier: 'abc' }, 'multiplier'],
      ['/admin/users/price-carol/pricing', {}, 'multiplier'],
    ];
    for (const [path, body, param] of bad) {
      const error = await assertOpenAiError(assert, await stack.admin('PUT', path, body), 400, 'invalid_request');
      assert.strictEqual(error.param, param, `${JSON.stringify(body)}: ${String(error.message)}`);
    }
    assert.strictEqual((await adminJson<Entry>(stack, '/admin/pricing')).default_multiplier, '1.000000', 'nothing was changed by the bad requests');
    await assertOpenAiError(assert, await stack.admin('PUT', '/admin/users/nobody/pricing', { multiplier: '2' }), 404, 'not_found');
    await assertOpenAiError(assert, await stack.admin('GET', '/admin/users/nobody/pricing'), 404, 'not_found');
    const anonymous = await fetch(`${stack.url}/admin/pricing`, { method: 'PUT', body: JSON.stringify({ default_multiplier: '9' }), headers: { 'content-type': 'application/json' } });
    await assertOpenAiError(assert, anonymous, 401, 'invalid_api_key');
  });
});
