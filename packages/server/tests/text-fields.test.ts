// Text Postgres cannot store as given — U+0000 (SQLSTATE 22021) or an unpaired UTF-16
// surrogate (the driver would silently store U+FFFD instead) — is a 400 naming the field on
// every route that writes or looks up text, never a 500. Nothing of it reaches the database.
import { startStack, type TestStack } from '@metergate/testkit';
import { assertOpenAiError, chat, messages } from './helpers.js';

interface Case {
  what: string;
  /** How the text travels: a path or query only as UTF-8, JSON (a body, a cursor) as any string. */
  where: 'path' | 'query' | 'json';
  method: string;
  path: string;
  body?: unknown;
  param: string | null;
  /** A user key instead of the admin token. */
  user?: boolean;
}

const NUL = '\u0000';
const LONE = '\ud800';

/**
 * Percent-encoding as a hostile client may send it: an unpaired surrogate (which no UTF-8 can
 * carry) goes as its CESU-8 bytes, which decode to nothing valid.
 */
function encoded(text: string): string {
  let out = '';
  for (const unit of text.match(/[\ud800-\udbff][\udc00-\udfff]|[\s\S]/g) ?? []) {
    const code = unit.length === 1 ? unit.charCodeAt(0) : 0;
    out += code >= 0xd800 && code <= 0xdfff
      ? [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f)].map((b) => `%${b.toString(16).toUpperCase()}`).join('')
      : encodeURIComponent(unit);
  }
  return out;
}

/** base64url of a users-list cursor whose user id carries `text`. */
function userCursor(text: string): string {
  return Buffer.from(JSON.stringify(['id', null, `a${text}b`])).toString('base64url');
}

function cases(bad: string, existing: string): Case[] {
  const inPath = encoded(`a${bad}b`);
  return [
    { where: 'path', what: 'user id in the path (read)', method: 'GET', path: `/admin/users/${inPath}`, param: 'id' },
    { where: 'path', what: 'user id in the path (new key)', method: 'POST', path: `/admin/users/${inPath}/keys`, param: 'id' },
    { where: 'path', what: 'user id in the path (credit)', method: 'POST', path: `/admin/users/${inPath}/credits`, body: { amount_usd: '1.00' }, param: 'id' },
    { where: 'json', what: 'credit note', method: 'POST', path: `/admin/users/${existing}/credits`, body: { amount_usd: '1.00', note: `top${bad}up` }, param: 'note' },
    { where: 'json', what: 'adjustment note', method: 'POST', path: `/admin/users/${existing}/credits`, body: { amount_usd: '-1.00', kind: 'adjustment', note: bad }, param: 'note' },
    { where: 'path', what: 'key id in the path (revoke)', method: 'DELETE', path: `/admin/keys/${encoded(`key_${bad}`)}`, param: 'keyId' },
    { where: 'path', what: 'user id in the path (pricing read)', method: 'GET', path: `/admin/users/${inPath}/pricing`, param: 'id' },
    { where: 'path', what: 'user id in the path (pricing write)', method: 'PUT', path: `/admin/users/${inPath}/pricing`, body: { multiplier: '1.5' }, param: 'id' },
    { where: 'json', what: 'new user id', method: 'POST', path: '/admin/users', body: { id: `a${bad}b` }, param: 'id' },
    { where: 'json', what: 'default multiplier', method: 'PUT', path: '/admin/pricing', body: { default_multiplier: `1${bad}` }, param: 'default_multiplier' },
    { where: 'query', what: 'ledger model filter', method: 'GET', path: `/admin/ledger?model=${inPath}`, param: 'model' },
    { where: 'query', what: 'ledger model filter (CSV)', method: 'GET', path: `/admin/ledger?format=csv&model=${inPath}`, param: 'model' },
    { where: 'query', what: 'ledger user filter', method: 'GET', path: `/admin/ledger?user_id=${inPath}`, param: 'user_id' },
    { where: 'query', what: 'usage model filter', method: 'GET', path: `/admin/usage?group_by=model&model=${inPath}`, param: 'model' },
    { where: 'query', what: 'usage user filter', method: 'GET', path: `/admin/usage?group_by=day&user_id=${inPath}`, param: 'user_id' },
    { where: 'query', what: 'users cursor', method: 'GET', path: `/admin/users?cursor=${inPath}`, param: 'cursor' },
    { where: 'json', what: 'users cursor carrying the text inside', method: 'GET', path: `/admin/users?cursor=${userCursor(bad)}`, param: 'cursor' },
    { where: 'query', what: 'users balance filter', method: 'GET', path: `/admin/users?balance_below_usd=${encoded(`1${bad}`)}`, param: 'balance_below_usd' },
    { where: 'query', what: 'requests user filter', method: 'GET', path: `/admin/requests?user_id=${inPath}`, param: 'user_id' },
    { where: 'query', what: 'requests cursor', method: 'GET', path: `/admin/requests?cursor=${inPath}`, param: 'cursor' },
    { where: 'json', what: 'chat model', method: 'POST', path: '/v1/chat/completions', body: { model: `openai/gpt-4o${bad}`, messages: messages() }, param: 'model', user: true },
    { where: 'json', what: 'chat model (stream)', method: 'POST', path: '/api/v1/chat/completions', body: { model: `${bad}`, stream: true, messages: messages() }, param: 'model', user: true },
    { where: 'json', what: 'chat models[] entry', method: 'POST', path: '/v1/chat/completions', body: { models: ['openai/gpt-4o', `x${bad}`], messages: messages() }, param: 'models', user: true },
  ];
}

async function send(stack: TestStack, key: string, c: Case): Promise<Response> {
  const token = c.user === true ? key : stack.adminToken;
  return fetch(`${stack.url}${c.path}`, {
    method: c.method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: c.body === undefined ? undefined : JSON.stringify(c.body),
    signal: AbortSignal.timeout(15_000),
  });
}

async function count(stack: TestStack, sql: string): Promise<number> {
  return (await stack.db.pool.query<{ n: number }>(sql)).rows[0]!.n;
}

QUnit.module('bad input: text Postgres cannot store', (hooks) => {
  let stack: TestStack;
  let key: string;
  hooks.before(async () => {
    stack = await startStack();
    key = await stack.createUser('texty');
  });
  hooks.after(async () => { await stack.close(); });

  for (const [label, bad] of [['NUL (U+0000)', NUL], ['an unpaired surrogate', LONE]] as const) {
    QUnit.test(`${label} in every stored or looked-up text field: 400 naming the field, nothing written`, async (assert) => {
      const ledgerBefore = await count(stack, 'select count(*)::integer as n from ledger_entries');
      // An unpaired surrogate can only arrive in JSON; in a URL it is undecodable bytes (next test).
      for (const c of cases(bad, 'texty').filter((item) => bad === NUL || item.where === 'json')) {
        const response = await send(stack, key, c);
        const error = await assertOpenAiError(assert, response, 400, 'invalid_request');
        assert.strictEqual(error.param, c.param, `${c.what}: param`);
      }
      assert.strictEqual(await count(stack, 'select count(*)::integer as n from ledger_entries'), ledgerBefore, 'no ledger entry');
      assert.strictEqual(await count(stack, 'select count(*)::integer as n from requests'), 0, 'no request admitted');
      assert.strictEqual(await count(stack, "select count(*)::integer as n from users where id <> 'texty'"), 0, 'no user created');
    });
  }

  QUnit.test('a path segment that is not UTF-8 percent-encoding is a 400, not a 500', async (assert) => {
    for (const path of ['/admin/users/%FF', '/admin/users/%ED%A0%80', '/admin/users/%E0%A4%A/keys', '/admin/keys/%C0%80']) {
      const response = await fetch(`${stack.url}${path}`, { method: path.endsWith('/keys') ? 'POST' : 'GET', headers: { authorization: `Bearer ${stack.adminToken}` } });
      await assertOpenAiError(assert, response, 400, 'invalid_request');
    }
  });

  QUnit.test('ordinary non-ASCII text still works (é, 日本, 🙂 as a surrogate pair)', async (assert) => {
    const note = 'crédit 日本 🙂';
    const credited = await stack.admin('POST', '/admin/users/texty/credits', { amount_usd: '1.00', note });
    assert.strictEqual(credited.status, 201, await credited.clone().text());
    assert.strictEqual(((await credited.json()) as { note: string }).note, note, 'stored as sent');
    const ok = await chat(stack, key, { model: 'openai/gpt-4o', messages: messages(`NUL in a message is fine: ${NUL} ${LONE}`) });
    assert.strictEqual(ok.status, 200, 'message content is forwarded, not stored as text');
    await ok.text();
  });

  QUnit.test('1,000 seeded hostile requests across the routes: never a 5xx', async (assert) => {
    let state = 20_261_202;
    const random = (n: number): number => {
      state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
      return state % n;
    };
    const pieces = [NUL, LONE, '\udfff', '\ufffe', '\u0001', '%', '%00', "'", '"', '\\', '\n', 'é', '🙂', '\u202e', ';--', ' '];
    const hostile = (): string => Array.from({ length: 1 + random(4) }, () => pieces[random(pieces.length)]!).join('');
    const failures: string[] = [];
    for (let i = 0; i < 1_000; i += 1) {
      const all = cases(hostile(), 'texty');
      const c = all[random(all.length)]!;
      const response = await send(stack, key, c);
      const text = await response.text();
      if (response.status >= 500) failures.push(`${c.what} ${c.path}: ${response.status} ${text}`);
    }
    assert.deepEqual(failures.slice(0, 5), [], `no 5xx (${failures.length} of 1000)`);
  });
});
