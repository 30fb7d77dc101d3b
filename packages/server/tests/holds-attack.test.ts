// Holds under hostile clients, in both barrier modes: a client that drops streams against a
// provider that keeps billing, a settle the database cannot take, a client that leaves while
// queued. The bound is checked against the simulator's own books.
import { usdTextToNano } from '@metergate/db';
import { eventually, startStack, type TestStack } from '@metergate/testkit';
import { assertBooks, assertNano, chat, messages, requestIdOf, requestRow, sleep, type Body } from './helpers.js';

async function balanceOf(stack: TestStack, user: string): Promise<{ balance: bigint; held: bigint }> {
  const { rows } = await stack.db.pool.query<{ balance: string; held: string }>(
    'select balance_nano::text as balance, held_nano::text as held from users where id = $1::text', [user]);
  return { balance: BigInt(rows[0]!.balance), held: BigInt(rows[0]!.held) };
}

/** Starts a stream, reads its first bytes, then drops the connection. Returns the status. */
async function dropAfterFirstByte(stack: TestStack, key: string, body: Body): Promise<number> {
  const abort = new AbortController();
  const response = await chat(stack, key, body, { signal: abort.signal });
  if (response.status === 200) {
    const reader = response.body!.getReader();
    await reader.read();
    abort.abort();
  } else {
    await response.text();
  }
  return response.status;
}

async function waitSettled(stack: TestStack, user: string, timeoutMs = 20_000): Promise<void> {
  await stack.sim.whenIdle(timeoutMs);
  await eventually(async () => (await stack.db.pool.query<{ n: number }>(
    `select count(*)::integer as n from requests where user_id = $1::text and state in ('in_flight', 'awaiting_cost')`, [user])).rows[0]!.n,
  (n) => n === 0, timeoutMs);
}

for (const mode of ['serialize', 'reserve'] as const) {
  QUnit.module(`holds (${mode} mode): hostile clients`, (hooks) => {
    let stack: TestStack;
    hooks.before(async () => {
      stack = await startStack({ env: { BARRIER: mode, STATEMENT_TIMEOUT_MS: '1000' } });
    });
    hooks.after(async () => { await stack.close(); });

    QUnit.test('12 streams dropped after the first byte against a provider that keeps billing: the bound holds', async (assert) => {
      const user = `dropper-${mode}`;
      const key = await stack.createUser(user, '0.001');
      // gpt-4o at $10 per million output tokens: each generation bills ~$0.02, 20× the balance.
      const body: Body = {
        model: 'openai/gpt-4o', stream: true, messages: messages('Write a long essay.'),
        sim: { completion_tokens: 2_000, chunk_delay_ms: 1, cancellable: false, lookup_404_ms: 1_500 },
      };
      const statuses: number[] = [];
      for (let i = 0; i < 12; i += 1) statuses.push(await dropAfterFirstByte(stack, key, body));
      await waitSettled(stack, user);
      const billed = await assertBooks(assert, stack, user, 20_000);
      const admitted = statuses.filter((s) => s === 200).length;
      assert.true(admitted >= 1, `at least one call was admitted (statuses ${statuses.join(',')})`);
      assert.true(statuses.every((s) => s === 200 || s === 402), 'every other call was refused with 402');
      const { balance, held } = await balanceOf(stack, user);
      assertNano(assert, held, 0n, 'every hold released once the costs landed');
      const costs = stack.sim.generations().filter((g) => g.user === user).map((g) => g.costNano);
      const largest = costs.reduce((a, b) => (a > b ? a : b), 0n);
      if (mode === 'serialize') {
        assert.true(balance >= -largest, `balance ${balance} ≥ −(one request) ${-largest} (before holds: 12 × the bound)`);
      } else {
        assert.true(balance >= 0n, `reserve: balance ${balance} never below the minimum`);
        assert.true(costs.every((c) => c > 0n && c <= usdTextToNano('0.001')), 'each call was cut to what the user could afford');
      }
      assertNano(assert, usdTextToNano('0.001') - billed, balance, 'balance = grant − billed');
    });

    QUnit.test('a settle the database cannot take keeps its hold: the next admission sees it', async (assert) => {
      const user = `deferred-${mode}`;
      const key = await stack.createUser(user, '0.01');
      // Holds the ledger: every settle times out (STATEMENT_TIMEOUT_MS) and is deferred.
      const blocker = await stack.db.pool.connect();
      let response: Response;
      try {
        await blocker.query('begin');
        await blocker.query('lock table ledger_entries in access exclusive mode');
        const first = await chat(stack, key, { model: 'openai/gpt-4o', max_tokens: 500, messages: messages() });
        assert.strictEqual(first.status, 200, 'the first call is served');
        await first.text();
        const row = await requestRow(stack, requestIdOf(first));
        assert.strictEqual(row?.state, 'in_flight', 'its settle is deferred: the request is still open');
        const { held } = await balanceOf(stack, user);
        assert.true(held > 0n, 'and its hold is still there');
        // gpt-4o, 500 output tokens: a hold of about $0.005 against $0.01.
        response = await chat(stack, key, { model: 'openai/gpt-4o', max_tokens: 600, messages: messages() });
      } finally {
        await blocker.query('rollback');
        blocker.release();
      }
      if (mode === 'serialize') {
        // available = 0.01 − hold > 0 still: serialize admits (its bound is one request).
        assert.strictEqual(response.status, 200, 'serialize admits while available > minimum');
      } else {
        assert.strictEqual(response.status, 402, 'reserve: 0.01 − 0.005 cannot hold another 0.006');
      }
      await response.text();
      await waitSettled(stack, user);
      await assertBooks(assert, stack, user);
      assertNano(assert, (await balanceOf(stack, user)).held, 0n, 'the deferred settle landed and released its hold');
    });

    QUnit.test('a call whose client leaves while its admission waits is admitted, then closed unsent: no charge, hold released', async (assert) => {
      const user = `leaver-${mode}`;
      const key = await stack.createUser(user, '5.00');
      // Holds the user's row: the admission statement waits on it.
      const blocker = await stack.db.pool.connect();
      const abort = new AbortController();
      try {
        await blocker.query('begin');
        await blocker.query('select 1 from users where id = $1::text for update', [user]);
        const leaving = chat(stack, key, { model: 'openai/gpt-4o-mini', messages: messages('I will leave') }, { signal: abort.signal });
        await sleep(200);
        abort.abort();
        await leaving.catch(() => undefined); // aborted on purpose: the books below are the verdict
        await sleep(50);
      } finally {
        await blocker.query('rollback');
        blocker.release();
      }
      const row = await eventually(async () => (await stack.db.pool.query<{ state: string; reason: string | null }>(
        'select state, reason from requests where user_id = $1::text', [user])).rows[0], (r) => r !== undefined && r.state !== 'in_flight', 5_000);
      assert.deepEqual(row, { state: 'failed', reason: 'client_gone_before_upstream' }, 'closed without a charge');
      assert.strictEqual(stack.sim.generations().filter((g) => g.user === user).length, 0, 'nothing was sent upstream');
      assertNano(assert, (await balanceOf(stack, user)).held, 0n, 'its hold was released');
      await assertBooks(assert, stack, user);
    });

    if (mode === 'serialize') {
      QUnit.test('a call whose client leaves while queued behind the same user is never admitted or sent', async (assert) => {
        const user = `queued-leaver-${mode}`;
        const key = await stack.createUser(user, '5.00');
        const long = chat(stack, key, { model: 'openai/gpt-4o-mini', stream: true, messages: messages(), sim: { completion_tokens: 40, chunk_delay_ms: 40 } });
        await sleep(150);
        const abort = new AbortController();
        const queued = chat(stack, key, { model: 'openai/gpt-4o-mini', messages: messages('I will leave') }, { signal: abort.signal });
        await sleep(100);
        abort.abort();
        await queued.catch(() => undefined); // aborted on purpose: the books below are the verdict
        await (await long).text();
        await waitSettled(stack, user);
        assert.strictEqual(stack.sim.generations().filter((g) => g.user === user).length, 1, 'only the first call reached the upstream');
        const rows = (await stack.db.pool.query<{ n: number }>('select count(*)::integer as n from requests where user_id = $1::text', [user])).rows[0]!.n;
        assert.strictEqual(rows, 1, 'the leaver was never admitted');
        assertNano(assert, (await balanceOf(stack, user)).held, 0n, 'no hold left behind');
        await assertBooks(assert, stack, user);
      });
    }
  });
}
