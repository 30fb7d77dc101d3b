// Credentials stay where they belong: the operator's OpenRouter key never reaches a client
// (bodies, headers, errors) or the logs; a user's key never reaches the upstream, which sees
// only the operator key and the Metergate user id.
import {
  assertBooks, chat, generationsOf, messages, operatorKey, readSse, startLoggedStack, userHeaders, type LoggedStack,
} from './helpers.js';

interface Seen { what: string; headers: string; body: string }

QUnit.module('security: credentials', (hooks) => {
  let stack: LoggedStack;
  const seen: Seen[] = [];
  const userKeys: string[] = [];
  hooks.before(async () => { stack = await startLoggedStack(); });
  hooks.after(async () => { await stack.close(); });

  async function record(what: string, responsePromise: Promise<Response>): Promise<Seen> {
    const response = await responsePromise;
    const headers = [...response.headers.entries()].map(([name, value]) => `${name}: ${value}`).join('\n');
    const body = response.headers.get('content-type')?.startsWith('text/event-stream') === true
      ? (await readSse(response)).text : await response.text();
    const entry = { what, headers, body };
    seen.push(entry);
    return entry;
  }

  QUnit.test('every kind of response is free of the operator key', async (assert) => {
    const key = await stack.createUser('sec-user');
    userKeys.push(key);
    const get = (path: string, token = key) => fetch(`${stack.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
    const body = (sim: Record<string, unknown>, stream = false) => ({ model: 'openai/gpt-4o', stream, messages: messages(), sim });
    await record('json', chat(stack, key, body({})));
    await record('stream', chat(stack, key, body({}, true)));
    await record('lookup json', chat(stack, key, body({ omit_usage: true })));
    await record('lookup stream', chat(stack, key, body({ omit_usage: true }, true)));
    await record('upstream 401', chat(stack, key, body({ error_before: { status: 401 } })));
    await record('upstream 402', chat(stack, key, body({ error_before: { status: 402, metadata: { limit_source: 'openrouter_in_flight_budget' } } })));
    await record('upstream 429', chat(stack, key, body({ error_before: { status: 429, retry_after_s: 1 } }, true)));
    await record('upstream 500', chat(stack, key, body({ error_before: { status: 500 } })));
    await record('mid-stream error', chat(stack, key, body({ error_after_tokens: 2, usage_on_error: true }, true)));
    await record('cut stream', chat(stack, key, body({ cut_after_tokens: 2 }, true)));
    await record('bad steering (upstream 400)', chat(stack, key, body({ latency_ms: 'soon' })));
    await record('unknown model (upstream 400)', chat(stack, key, { model: 'nope/nope', messages: messages() }));
    await record('invalid json', chat(stack, key, '{'));
    await record('no key', chat(stack, null, body({})));
    for (const path of ['/v1/models', '/api/v1/models', '/v1/credits', '/api/v1/credits', '/healthz', '/readyz', '/metrics', '/nope']) {
      await record(path, get(path));
    }
    await record('admin user', get('/admin/users/sec-user', stack.adminToken));
    await record('admin ledger', get('/admin/ledger', stack.adminToken));
    await record('admin bad token', get('/admin/ledger', key));
    await stack.sim.whenIdle();
    const secret = operatorKey(stack);
    for (const entry of seen) {
      assert.false(entry.headers.includes(secret), `${entry.what}: headers free of the operator key`);
      assert.false(entry.body.includes(secret), `${entry.what}: body free of the operator key`);
    }
    assert.true(seen.length >= 25, `${seen.length} responses searched`);
    await assertBooks(assert, stack, 'sec-user');
  });

  QUnit.test("the upstream sees only the operator key and the Metergate user id, never a user's key", async (assert) => {
    const key = await stack.createUser('sec-spoofer');
    userKeys.push(key);
    // A client naming someone else as `user` is still metered, and reported upstream, as itself.
    const response = await chat(stack, key, { model: 'openai/gpt-4o', messages: messages(), user: 'sec-user' });
    assert.strictEqual(response.status, 200, await response.text());
    const extra = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST', headers: { ...userHeaders(key), 'x-api-key': key, 'openai-organization': key },
      body: JSON.stringify({ model: 'openai/gpt-4o', stream: true, messages: messages() }),
    });
    await readSse(extra);
    await stack.sim.whenIdle();
    assert.strictEqual(generationsOf(stack, 'sec-spoofer').length, 2, 'attributed to the caller');
    const expected = `Bearer ${operatorKey(stack)}`;
    assert.true(stack.sim.requestLog.length > 0);
    for (const entry of stack.sim.requestLog) {
      assert.strictEqual(entry.authorization, expected, `${entry.method} ${entry.path}: operator key`);
      for (const userKey of userKeys) assert.false(JSON.stringify(entry).includes(userKey), 'no user key upstream');
    }
    const chats = stack.sim.requestLog.filter((entry) => entry.path.endsWith('/chat/completions'));
    assert.true(chats.length >= 10);
    assert.true(chats.every((entry) => entry.user === 'sec-user' || entry.user === 'sec-spoofer'), 'body user is the Metergate user id');
    assert.strictEqual(chats.at(-2)?.user, 'sec-spoofer', "the client's own `user` field is replaced");
    await assertBooks(assert, stack, 'sec-spoofer');
  });

  QUnit.test('the logs hold neither the operator key, nor user keys, nor the admin token', async (assert) => {
    assert.true(stack.logs.length > 20, `${stack.logs.length} log lines written`);
    assert.true(stack.logs.some((line) => line.includes('"requestId"')), 'request ids are logged');
    const secrets = [operatorKey(stack), stack.adminToken, ...userKeys];
    for (const secret of secrets) {
      const leaks = stack.logs.filter((line) => line.includes(secret));
      assert.deepEqual(leaks, [], `no log line contains ${secret.slice(0, 8)}…`);
    }
  });
});
