import { users } from '@metergate/db';
import { eventually, startStack, type TestStack } from '@metergate/testkit';
import { adminGet, parseCsv } from './admin-reports-fixtures.js';

const ROWS = 100_000;

/**
 * The export's own session in pg_stat_activity. Between cursor reads the backend waits for
 * the next Execute message: wait_event ClientRead (its state stays 'active': no Sync is sent
 * until the cursor closes).
 */
async function exportSessions(stack: TestStack): Promise<Array<{ state: string; wait: string | null }>> {
  const result = await stack.db.pool.query<{ state: string; wait: string | null }>(
    `select state, wait_event as wait from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid() and query like '%from ledger_entries%order by created_at desc, id desc%'
        and state <> 'idle'`);
  return result.rows;
}

QUnit.module('admin ledger CSV export: streamed with backpressure, stops when the client leaves', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => {
    stack = await startStack();
    await users.insertUser(stack.db.pool, 'bulk');
    // 100,000 one-nano grants with consistent running balances, in one statement.
    await stack.db.pool.query(
      `insert into ledger_entries (user_id, kind, amount_nano, balance_after_nano, note, created_at)
       select 'bulk', 'grant', 1, i, 'row ' || i, now() - (${ROWS} - i) * interval '1 millisecond'
         from generate_series(1, ${ROWS}) i`);
    await stack.db.pool.query(`update users set balance_nano = ${ROWS}, credits_nano = ${ROWS} where id = 'bulk'`);
  });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('a slow reader holds the export at the cursor (nothing buffered to the end); it then completes whole', async (assert) => {
    const response = await adminGet(stack, '/admin/ledger?format=csv');
    assert.strictEqual(response.status, 200);
    const reader = response.body!.getReader();
    const first = await reader.read();
    assert.false(first.done);
    // While we do not read, the server must wait for 'drain' and ask Postgres for nothing more:
    // 100,000 rows (~20 MB) do not fit in the socket buffers. Sampled over 1.5 s, the export's
    // session is still there and idle, waiting for the next read (ClientRead) every time.
    // The server first fills the socket buffers (how long that takes depends on the machine's
    // load: during a full run 500 ms was once not enough), then it must stay held: six samples
    // in a row, 250 ms apart, must find it waiting. An export buffered to the end never is.
    const held = JSON.stringify([{ state: 'active', wait: 'ClientRead' }]);
    const samples: string[] = [];
    let inRow = 0;
    const deadline = Date.now() + 15_000;
    while (inRow < 6 && Date.now() < deadline) {
      const sample = JSON.stringify(await exportSessions(stack));
      samples.push(sample);
      inRow = sample === held ? inRow + 1 : 0;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.strictEqual(inRow, 6, `the cursor waits on the slow client (samples: ${samples.slice(-10).join(' ')})`);
    const decoder = new TextDecoder();
    let text = decoder.decode(first.value, { stream: true });
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    const rows = parseCsv(text + decoder.decode());
    assert.strictEqual(rows.length, ROWS + 1, 'header + every row');
    assert.strictEqual(rows[1]![0], String(ROWS), 'newest first');
    assert.strictEqual(rows.at(-1)![0], '1');
    assert.deepEqual(await eventually(() => exportSessions(stack), (r) => r.length === 0, 5_000), [], 'the export session is done');
  });

  QUnit.test('a third concurrent export is a 429 with Retry-After in OpenAI shape; a freed slot admits the next', async (assert) => {
    const controllers = [new AbortController(), new AbortController()];
    try {
      for (const controller of controllers) {
        const response = await fetch(`${stack.url}/admin/ledger?format=csv`, { headers: { authorization: `Bearer ${stack.adminToken}` }, signal: controller.signal });
        assert.strictEqual(response.status, 200);
        await response.body!.getReader().read(); // started, then held by backpressure
      }
      const third = await adminGet(stack, '/admin/ledger?format=csv');
      assert.strictEqual(third.status, 429);
      assert.strictEqual(third.headers.get('retry-after'), '5');
      const body = await third.json() as { error: { type: string; code: string; message: string } };
      assert.strictEqual(body.error.code, 'too_many_exports');
      assert.strictEqual(body.error.type, 'rate_limit_error');
      assert.true(body.error.message.includes('2 CSV exports are already running'), body.error.message);
      assert.strictEqual((await adminGet(stack, '/admin/ledger?limit=1')).status, 200, 'JSON pages are not limited');
      controllers[0]!.abort();
      const next = await eventually(() => adminGet(stack, '/admin/ledger?format=csv&user_id=nobody'), (response) => response.status === 200, 10_000);
      assert.strictEqual(next.status, 200, 'the aborted export\'s slot is free again');
      assert.deepEqual(parseCsv(await next.text()).length, 1, 'header only: nobody has entries');
    } finally {
      for (const controller of controllers) controller.abort();
    }
  });

  QUnit.test('a client that disconnects mid-export frees the database client and the export slot', async (assert) => {
    for (let i = 0; i < 4; i += 1) {
      const controller = new AbortController();
      // The server frees an aborted export's slot when it sees the close, a moment after the
      // abort here (longer on a loaded machine): a 429 meanwhile is retried, within a bound.
      const response = await eventually(async () => {
        const attempt = await fetch(`${stack.url}/admin/ledger?format=csv`, {
          headers: { authorization: `Bearer ${stack.adminToken}` }, signal: controller.signal,
        });
        if (attempt.status === 429) await attempt.text();
        return attempt;
      }, (attempt) => attempt.status !== 429, 10_000);
      assert.strictEqual(response.status, 200, `export ${i + 1} is admitted (the slots of the aborted ones were freed)`);
      await response.body!.getReader().read();
      controller.abort();
    }
    const sessions = await eventually(() => exportSessions(stack), (rows) => rows.length === 0, 10_000);
    assert.deepEqual(sessions, [], 'no export is left running in Postgres');
    const pool = stack.runtime.services.pools.write;
    const busy = await eventually(async () => pool.totalCount - pool.idleCount, (n) => n === 0, 10_000);
    assert.strictEqual(busy, 0, 'every write-pool client is back in the pool');
    const full = await adminGet(stack, '/admin/ledger?format=csv&user_id=bulk&since=' + encodeURIComponent(new Date(Date.now() - 3_600_000).toISOString()));
    assert.strictEqual(parseCsv(await full.text()).length, ROWS + 1, 'a later export still runs to the end');
  });
});
