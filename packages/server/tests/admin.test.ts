// The admin API: users and keys, credits as decimal strings, balances with nine decimals, the
// ledger with keyset pagination; everything behind the admin token.
import { startStack, type TestStack } from '@metergate/testkit';
import { assertBooks, assertNano, assertOpenAiError, chat, messages, sleep } from './helpers.js';

const AMOUNT_RE = /^-?\d+\.\d{9}$/;

interface Entry { id: string; user_id: string; kind: string; amount_usd: string; balance_after_usd: string; created_at: string; [key: string]: unknown }

QUnit.module('admin API', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  const credits = (key: string) => fetch(`${stack.url}/v1/credits`, { headers: { authorization: `Bearer ${key}` } });

  QUnit.test('POST /admin/users: 201 with a key shown once, 409 on a duplicate, 400 on a bad id', async (assert) => {
    const created = await stack.admin('POST', '/admin/users', { id: 'alice' });
    assert.strictEqual(created.status, 201);
    const body = await created.json() as { id: string; api_key: string; key_id: string; balance_usd: string };
    assert.strictEqual(body.id, 'alice');
    assert.true(typeof body.api_key === 'string' && body.api_key.length >= 32, 'an API key');
    assert.strictEqual(body.balance_usd, '0.000000000');
    assert.strictEqual((await credits(body.api_key)).status, 200, 'the key works');
    const stored = await stack.db.pool.query<{ hash: Buffer }>('select key_hash as hash from api_keys where user_id = $1::text', ['alice']);
    assert.strictEqual(stored.rows.length, 1);
    assert.false(stored.rows[0]!.hash.toString('utf8').includes(body.api_key) || stored.rows[0]!.hash.toString('hex').includes(body.api_key), 'only a hash is stored');
    const shown = await (await stack.admin('GET', '/admin/users/alice')).text();
    assert.false(shown.includes(body.api_key), 'the key is not shown again');

    await assertOpenAiError(assert, await stack.admin('POST', '/admin/users', { id: 'alice' }), 409, 'conflict');
    for (const id of ['', '-starts-with-dash', 'has space', 'a'.repeat(129), 'semi;colon', 'ünïcode', 42, null]) {
      const error = await assertOpenAiError(assert, await stack.admin('POST', '/admin/users', { id }), 400, 'invalid_request');
      assert.strictEqual(error.param, 'id', `bad id ${JSON.stringify(id)}`);
    }
    await assertOpenAiError(assert, await stack.admin('POST', '/admin/users', {}), 400, 'invalid_request');
    await assertOpenAiError(assert, await stack.admin('POST', '/admin/users', 'not json'), 400, 'invalid_request');
    const raw = await fetch(`${stack.url}/admin/users`, { method: 'POST', headers: { authorization: `Bearer ${stack.adminToken}` }, body: '{"id":' });
    await assertOpenAiError(assert, raw, 400, 'invalid_json');
    assert.strictEqual((await stack.admin('POST', '/admin/users', { id: 'a'.repeat(128) })).status, 201, '128 characters is fine');
  });

  QUnit.test('keys: POST /admin/users/:id/keys adds one; DELETE /admin/keys/:keyId revokes only that one', async (assert) => {
    const first = await (await stack.admin('POST', '/admin/users', { id: 'bob' })).json() as { api_key: string; key_id: string };
    const added = await stack.admin('POST', '/admin/users/bob/keys');
    assert.strictEqual(added.status, 201);
    const second = await added.json() as { id: string; user_id: string; api_key: string };
    assert.strictEqual(second.user_id, 'bob');
    assert.notStrictEqual(second.api_key, first.api_key);
    assert.strictEqual((await credits(second.api_key)).status, 200, 'the new key works');
    await assertOpenAiError(assert, await stack.admin('POST', '/admin/users/nobody/keys'), 404, 'not_found');

    const revoked = await stack.admin('DELETE', `/admin/keys/${second.id}`);
    assert.strictEqual(revoked.status, 200);
    assert.deepEqual(await revoked.json(), { id: second.id, revoked: true });
    await assertOpenAiError(assert, await credits(second.api_key), 401, 'invalid_api_key');
    await assertOpenAiError(assert, await chat(stack, second.api_key, { messages: messages() }), 401, 'invalid_api_key');
    assert.strictEqual((await credits(first.api_key)).status, 200, 'the other key still works');
    assert.strictEqual((await stack.admin('DELETE', `/admin/keys/${second.id}`)).status, 200, 'revoking twice is harmless');
    await assertOpenAiError(assert, await stack.admin('DELETE', '/admin/keys/key_nope'), 404, 'not_found');
  });

  QUnit.test('credits: decimal strings only; 400 on numbers, too many decimals, zero; 404 for an unknown user', async (assert) => {
    await stack.admin('POST', '/admin/users', { id: 'carol' });
    const granted = await stack.admin('POST', '/admin/users/carol/credits', { amount_usd: '5.00', note: 'top-up' });
    assert.strictEqual(granted.status, 201);
    const entry = await granted.json() as Entry;
    assert.strictEqual(entry.kind, 'grant');
    assert.strictEqual(entry.amount_usd, '5.000000000');
    assert.strictEqual(entry.balance_after_usd, '5.000000000');
    assert.strictEqual(entry.user_id, 'carol');
    assert.strictEqual(entry.note, 'top-up');
    for (const key of ['id', 'user_id', 'kind', 'amount_usd', 'balance_after_usd', 'request_id', 'generation_id', 'model', 'prompt_tokens', 'completion_tokens', 'created_at', 'note']) {
      assert.true(key in entry, `entry has ${key}`);
    }
    const tiny = await (await stack.admin('POST', '/admin/users/carol/credits', { amount_usd: '0.000000001' })).json() as Entry;
    assert.strictEqual(tiny.balance_after_usd, '5.000000001', 'nine decimals kept exactly');
    const adjusted = await stack.admin('POST', '/admin/users/carol/credits', { amount_usd: '-1.5', kind: 'adjustment', note: 'refund' });
    assert.strictEqual(adjusted.status, 201);
    assert.strictEqual((await adjusted.json() as Entry).amount_usd, '-1.500000000');

    const bad: unknown[] = [5, 5.5, 0.1, '0.0000000001', '1.1234567891', '0', '0.000', '-0', 'abc', '1e3', '', ' ', '1,5', null, '-2'];
    for (const amount of bad) {
      const error = await assertOpenAiError(assert, await stack.admin('POST', '/admin/users/carol/credits', { amount_usd: amount }), 400, 'invalid_request');
      assert.strictEqual(error.param, 'amount_usd', `refused ${JSON.stringify(amount)}`);
    }
    await assertOpenAiError(assert, await stack.admin('POST', '/admin/users/carol/credits', {}), 400, 'invalid_request');
    await assertOpenAiError(assert, await stack.admin('POST', '/admin/users/carol/credits', { amount_usd: '1.00', kind: 'usage' }), 400, 'invalid_request');
    await assertOpenAiError(assert, await stack.admin('POST', '/admin/users/nobody/credits', { amount_usd: '1.00' }), 404, 'not_found');

    const user = await (await stack.admin('GET', '/admin/users/carol')).json() as Record<string, string>;
    assert.strictEqual(user.balance_usd, '3.500000001', 'balance after grant, grant and adjustment');
  });

  QUnit.test('GET /admin/users/:id: balances as strings with nine decimals, consistent with usage', async (assert) => {
    const key = await stack.createUser('dave', '2.00');
    const response = await chat(stack, key, { model: 'perplexity/sonar', messages: messages() });
    assert.strictEqual(response.status, 200, await response.text());
    const billed = await assertBooks(assert, stack, 'dave');
    const user = await (await stack.admin('GET', '/admin/users/dave')).json() as Record<string, string>;
    assert.strictEqual(user.id, 'dave');
    for (const field of ['balance_usd', 'total_credits_usd', 'total_usage_usd']) {
      assert.true(AMOUNT_RE.test(user[field] ?? ''), `${field} = ${user[field]}`);
    }
    assert.strictEqual(user.total_credits_usd, '2.000000000');
    assertNano(assert, toNano(user.total_usage_usd!), billed, 'usage to the nano-dollar');
    assertNano(assert, toNano(user.balance_usd!), 2_000_000_000n - billed, 'balance = credits - usage');
    await assertOpenAiError(assert, await stack.admin('GET', '/admin/users/nobody'), 404, 'not_found');
  });

  QUnit.test('GET /admin/ledger: newest first; the next_cursor chain covers every entry exactly once; since/until/user_id filter', async (assert) => {
    const users = ['led-a', 'led-b'];
    for (const id of users) await stack.admin('POST', '/admin/users', { id });
    const groups: Entry[][] = [];
    for (let group = 0; group < 3; group += 1) {
      const made: Entry[] = [];
      for (let n = 0; n < 4; n += 1) {
        const id = users[n % 2]!;
        made.push(await (await stack.admin('POST', `/admin/users/${id}/credits`, { amount_usd: `0.${group}${n}1` })).json() as Entry);
      }
      groups.push(made);
      await sleep(30);
    }
    const all = groups.flat();
    const ofA = all.filter((entry) => entry.user_id === 'led-a');

    const chain = await walk('/admin/ledger?user_id=led-a&limit=2');
    assert.deepEqual(chain.map((e) => e.id), ofA.map((e) => e.id).reverse(), "led-a's entries, newest first, each once");
    const full = await walk('/admin/ledger?limit=5');
    const ids = full.map((e) => BigInt(e.id));
    assert.strictEqual(new Set(ids).size, ids.length, 'no entry twice');
    assert.true(ids.every((id, i) => i === 0 || id < ids[i - 1]!), 'strictly newest first');
    const expected = (await stack.db.pool.query<{ n: number }>('select count(*)::integer as n from ledger_entries')).rows[0]!.n;
    assert.strictEqual(full.length, expected, 'every ledger entry once');
    for (const entry of chain) assert.true(AMOUNT_RE.test(entry.amount_usd) && AMOUNT_RE.test(entry.balance_after_usd));

    const since = groups[1]![0]!.created_at;
    const until = groups[2]![0]!.created_at;
    const window = await walk(`/admin/ledger?since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}&limit=3`);
    assert.deepEqual(window.map((e) => e.id), groups[1]!.map((e) => e.id).reverse(), 'since inclusive, until exclusive');
    const windowA = await walk(`/admin/ledger?user_id=led-a&since=${encodeURIComponent(since)}&limit=100`);
    assert.deepEqual(windowA.map((e) => e.id), [...groups[1]!, ...groups[2]!].filter((e) => e.user_id === 'led-a').map((e) => e.id).reverse());
    const none = await (await stack.admin('GET', '/admin/ledger?user_id=nobody')).json() as { data: unknown[]; next_cursor: unknown };
    assert.deepEqual(none, { data: [], next_cursor: null });

    for (const query of ['limit=0', 'limit=abc', 'limit=100000', 'cursor=xyz', 'cursor=-1', 'since=yesterday', 'until=2024-13-01']) {
      await assertOpenAiError(assert, await stack.admin('GET', `/admin/ledger?${query}`), 400, 'invalid_request');
    }

    async function walk(first: string): Promise<Entry[]> {
      const out: Entry[] = [];
      let path: string | null = first;
      for (let pages = 0; path !== null && pages < 100; pages += 1) {
        const response = await stack.admin('GET', path);
        assert.strictEqual(response.status, 200);
        const page = await response.json() as { data: Entry[]; next_cursor: string | null };
        out.push(...page.data);
        path = page.next_cursor === null ? null : `${first}&cursor=${page.next_cursor}`;
      }
      assert.strictEqual(path, null, 'the chain ends');
      return out;
    }
  });

  QUnit.test('wrong or missing admin token: 401 on every admin route', async (assert) => {
    const userKey = await stack.createUser('eve');
    const routes: Array<[string, string, unknown]> = [
      ['POST', '/admin/users', { id: 'mallory' }], ['GET', '/admin/users/eve', undefined], ['POST', '/admin/users/eve/keys', undefined],
      ['DELETE', '/admin/keys/whatever', undefined], ['POST', '/admin/users/eve/credits', { amount_usd: '100.00' }], ['GET', '/admin/ledger', undefined],
    ];
    for (const token of [null, 'wrong-token-of-some-length', `${stack.adminToken}x`, stack.adminToken.slice(0, -1), userKey]) {
      for (const [method, path, body] of routes) {
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (token !== null) headers.authorization = `Bearer ${token}`;
        const response = await fetch(`${stack.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
        await assertOpenAiError(assert, response, 401, 'invalid_api_key');
      }
    }
    assert.strictEqual((await stack.admin('GET', '/admin/users/mallory')).status, 404, 'nothing was created');
    const eve = await (await stack.admin('GET', '/admin/users/eve')).json() as Record<string, string>;
    assert.strictEqual(eve.total_credits_usd, '10.000000000', 'nothing was credited');
  });
});

function toNano(usd: string): bigint {
  const negative = usd.startsWith('-');
  const [whole = '0', fraction = ''] = usd.replace('-', '').split('.');
  const nano = BigInt(whole) * 1_000_000_000n + BigInt(fraction.padEnd(9, '0'));
  return negative ? -nano : nano;
}
