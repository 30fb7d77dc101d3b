// Deep or oversized JSON is the client's mistake (400 before admission, nothing reaches the
// database or the upstream), and a programmer error is a 500 `internal_error` logged at error
// with its stack — never 503 "database unavailable".
import { startStack, type TestStack } from '@metergate/testkit';
import { assertBooks, assertOpenAiError, chat, messages, requestIdOf, requestRow, startLoggedStack, type LoggedStack } from './helpers.js';

/** The documented limit (README, "The HTTP contract"): containers nested deeper are refused. */
const JSON_DEPTH_MAX = 64;

/** `{"messages": [...], "x": [[[…1…]]]}` whose deepest value sits at `depth` containers. */
function nestedBody(depth: number, extra: Record<string, unknown> = {}): string {
  // The body object itself is one level; `x` adds depth - 1 arrays.
  const inner = depth - 1;
  return `{"model":"openai/gpt-4o","messages":${JSON.stringify(messages())},${JSON.stringify(extra).slice(1, -1)}${Object.keys(extra).length > 0 ? ',' : ''}"x":${'['.repeat(inner)}1${']'.repeat(inner)}}`;
}

async function tableCount(stack: TestStack, table: 'requests' | 'idempotency_keys'): Promise<number> {
  const result = await stack.db.pool.query<{ n: number }>(`select count(*)::integer as n from ${table}`);
  return result.rows[0]!.n;
}

function chatCalls(stack: TestStack): number {
  return stack.sim.requestLog.filter((entry) => entry.path.endsWith('/chat/completions')).length;
}

QUnit.module('bad input: JSON nesting depth', (hooks) => {
  let stack: TestStack;
  let key: string;
  hooks.before(async () => {
    stack = await startStack();
    key = await stack.createUser('deep');
  });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('a 5,000-deep body (about 10 KB) is a 400 before admission: no request row, no idempotency key, nothing upstream', async (assert) => {
    const body = nestedBody(5_000);
    assert.true(body.length > 10_000 && body.length < 11_000, `about 10 KB (${body.length} bytes)`);
    const before = chatCalls(stack);
    for (const stream of [false, true]) {
      for (const idempotencyKey of [null, `deep-${String(stream)}`]) {
        const headers: Record<string, string> = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
        if (idempotencyKey !== null) headers['idempotency-key'] = idempotencyKey;
        const text = stream ? body.replace('{', '{"stream":true,') : body;
        const error = await assertOpenAiError(assert, await chat(stack, key, text, { headers }), 400, 'invalid_request');
        assert.true(String(error.message).includes(String(JSON_DEPTH_MAX)), `the message names the limit: ${String(error.message)}`);
      }
    }
    // Deeper than any stack: 1,000,000 levels in 2 MB.
    const abyss = `{"messages":${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}}`;
    await assertOpenAiError(assert, await chat(stack, key, abyss), 400, 'invalid_request');
    assert.strictEqual(chatCalls(stack), before, 'nothing reached the upstream');
    assert.strictEqual(await tableCount(stack, 'requests'), 0, 'no request row');
    assert.strictEqual(await tableCount(stack, 'idempotency_keys'), 0, 'no idempotency key');
  });

  QUnit.test(`exactly ${JSON_DEPTH_MAX} levels is accepted and billed; ${JSON_DEPTH_MAX + 1} is not`, async (assert) => {
    const over = await assertOpenAiError(assert, await chat(stack, key, nestedBody(JSON_DEPTH_MAX + 1)), 400, 'invalid_request');
    assert.strictEqual(over.param, 'x', 'param names the top-level field that is too deep');
    for (const idempotencyKey of [null, 'at-the-limit']) {
      const headers: Record<string, string> = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
      if (idempotencyKey !== null) headers['idempotency-key'] = idempotencyKey;
      const ok = await chat(stack, key, nestedBody(JSON_DEPTH_MAX), { headers });
      assert.strictEqual(ok.status, 200, await ok.text());
    }
    await assertBooks(assert, stack, 'deep');
  });

  QUnit.test('admin bodies have the same limit', async (assert) => {
    const deepNote = `{"amount_usd":"1.00","note":${'['.repeat(5_000)}${']'.repeat(5_000)}}`;
    const response = await fetch(`${stack.url}/admin/users/deep/credits`, {
      method: 'POST', headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' }, body: deepNote,
    });
    const error = await assertOpenAiError(assert, response, 400, 'invalid_request');
    assert.strictEqual(error.param, 'note');
  });
});

QUnit.module('errors: a programmer error is a 500 internal_error', (hooks) => {
  let stack: LoggedStack;
  hooks.before(async () => { stack = await startLoggedStack(); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('an unexpected exception in the call path: 500 internal_error (not 503), logged at error with its stack', async (assert) => {
    const key = await stack.createUser('bug');
    const upstream = stack.runtime.services.upstream;
    const original = upstream.chatCompletions.bind(upstream);
    // A bug inside the call path: a TypeError with no code, like the stack overflow once was.
    upstream.chatCompletions = () => Promise.reject(new TypeError('a deliberate bug for this test'));
    try {
      const response = await chat(stack, key, { model: 'openai/gpt-4o', messages: messages() });
      const requestId = requestIdOf(response);
      const error = await assertOpenAiError(assert, response, 500, 'internal_error');
      assert.strictEqual(error.type, 'server_error');
      assert.strictEqual(response.headers.get('retry-after'), null, 'no Retry-After: retrying does not help');
      const logged = stack.logs.map((line) => JSON.parse(line) as { level: number; requestId?: string; err?: { stack?: string } })
        .filter((line) => line.requestId === requestId && line.level >= 50);
      assert.true(logged.some((line) => (line.err?.stack ?? '').includes('a deliberate bug for this test')), 'logged at error with the stack');
      const row = await requestRow(stack, requestId);
      assert.notStrictEqual(row?.state, 'in_flight', `the request row is closed (${row?.state}/${row?.reason})`);
    } finally {
      upstream.chatCompletions = original;
    }
  });
});
