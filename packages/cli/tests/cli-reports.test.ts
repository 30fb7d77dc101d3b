// The CLI's read side against a seeded database: ledger (table, JSON, CSV export), usage
// summaries, requests, pricing, and the books check (exit 0, then 1 once the books are broken).
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { formatNano, ledger, requests, usdTextToNano, users } from '@metergate/db';
import { createTestDatabase, type TestDatabase } from '@metergate/testkit';
import { CLI_PATH, like, parseCsv, runCli, runInTerminal, type CliResult } from './run-cli.js';

const MODELS = ['openai/gpt-4o-mini', 'anthropic/claude-sonnet-4'];
const USERS = ['carol', 'dave', 'erin'];

interface EntryJson { id: string; user_id: string; kind: string; amount_usd: string; model: string | null; note: string | null; [field: string]: unknown }

QUnit.module('cli: ledger, usage, requests, pricing, verify', (hooks) => {
  let db: TestDatabase;
  let cli: (...args: string[]) => Promise<CliResult>;
  let dir: string;
  const openRequests: string[] = [];

  /** A settled call through the same SQL the proxy's settle uses; cost varies per call. */
  async function settledCall(userId: string, model: string, upstreamCostNano: bigint, tokens: number): Promise<void> {
    const id = randomUUID();
    await requests.insertRequest(db.pool, { id, userId, replicaId: 'cli-test', model, stream: false });
    const entry = await ledger.settleUsage(db.pool, { requestId: id, upstreamCostNano, generationId: `gen-${id}`, promptTokens: tokens, completionTokens: 2 * tokens });
    if (entry === null) throw new Error('settle refused');
  }

  hooks.before(async () => {
    db = await createTestDatabase();
    cli = (...args) => runCli(args, { DATABASE_URL: db.url });
    dir = await mkdtemp(path.join(tmpdir(), 'mg-cli-'));
    for (const [index, id] of USERS.entries()) {
      await users.insertUser(db.pool, id);
      await ledger.appendCredit(db.pool, { userId: id, kind: 'grant', amountNano: usdTextToNano('3.00') * BigInt(index + 1), note: index === 0 ? 'top-up, "march"\nline two' : null });
    }
    // Different amounts per user and model, so the sort by cost and the sums mean something.
    for (const [u, userId] of USERS.entries()) {
      for (const [m, model] of MODELS.entries()) {
        for (let call = 0; call <= u + m; call += 1) await settledCall(userId, model, BigInt(1_000_003 * (u + 1) + 7_919 * m + call), 10 + call);
      }
    }
    for (let i = 0; i < 2; i += 1) {
      const id = randomUUID();
      await requests.insertRequest(db.pool, { id, userId: 'dave', replicaId: 'cli-test', model: MODELS[0]!, stream: true });
      // Awaiting a cost lookup (not in_flight, which `verify` would rightly call stuck once this test replica's lease passed).
      await requests.markAwaitingCost(db.pool, id, { generationId: `gen-${id}`, reason: 'cli test', nextLookupAt: new Date(Date.now() + 86_400_000) });
      openRequests.push(id);
    }
  });
  hooks.after(async () => {
    await rm(dir, { recursive: true, force: true });
    await db.drop();
  });

  QUnit.test('ledger --json: newest first, filters, keyset pages that join up', async (assert) => {
    const all = await cli('ledger', '--json', '--limit', '1000');
    assert.strictEqual(all.code, 0, all.stderr);
    const entries = (JSON.parse(all.stdout) as { data: EntryJson[]; next_cursor: string | null }).data;
    const count = await db.pool.query<{ n: number }>('select count(*)::integer as n from ledger_entries');
    assert.strictEqual(entries.length, count.rows[0]!.n);
    assert.deepEqual(entries.map((e) => BigInt(e.id)), entries.map((e) => BigInt(e.id)).sort((a, b) => (a < b ? 1 : -1)), 'newest first');

    const filtered = JSON.parse((await cli('ledger', '--json', '--user', 'dave', '--kind', 'usage', '--model', MODELS[1]!)).stdout) as { data: EntryJson[] };
    assert.ok(filtered.data.length > 0);
    assert.ok(filtered.data.every((e) => e.user_id === 'dave' && e.kind === 'usage' && e.model === MODELS[1]));
    assert.strictEqual(filtered.data.length, entries.filter((e) => e.user_id === 'dave' && e.kind === 'usage' && e.model === MODELS[1]).length);

    const first = JSON.parse((await cli('ledger', '--json', '--limit', '5')).stdout) as { data: EntryJson[]; next_cursor: string };
    const second = JSON.parse((await cli('ledger', '--json', '--limit', '5', '--cursor', first.next_cursor)).stdout) as { data: EntryJson[] };
    assert.deepEqual([...first.data, ...second.data].map((e) => e.id), entries.slice(0, 10).map((e) => e.id));

    const future = JSON.parse((await cli('ledger', '--json', '--since', new Date(Date.now() + 3_600_000).toISOString())).stdout) as { data: unknown[] };
    assert.strictEqual(future.data.length, 0, '--since in the future selects nothing');
  });

  QUnit.test('ledger table shows amounts with nine decimals and hints at the next page', async (assert) => {
    const table = await cli('ledger', '--limit', '3');
    assert.strictEqual(table.code, 0, table.stderr);
    const newest = (JSON.parse((await cli('ledger', '--json', '--limit', '3')).stdout) as { data: EntryJson[] }).data;
    for (const entry of newest) assert.ok(table.stdout.includes(entry.amount_usd), entry.amount_usd);
    like(assert, table.stderr, new RegExp(`--cursor ${newest[2]!.id}`));
  });

  QUnit.test('ledger --csv (stdout and --output) equals the --json rows, field for field', async (assert) => {
    const json = (JSON.parse((await cli('ledger', '--json', '--limit', '1000')).stdout) as { data: EntryJson[] }).data;
    const csv = await cli('ledger', '--csv');
    assert.strictEqual(csv.code, 0, csv.stderr);
    const file = path.join(dir, 'ledger.csv');
    const toFile = await cli('ledger', '--csv', '--output', file);
    assert.strictEqual(toFile.code, 0, toFile.stderr);
    assert.strictEqual(await readFile(file, 'utf8'), csv.stdout, 'file and stdout hold the same export');
    assert.strictEqual(toFile.stdout, '', 'nothing but the file is written');
    const [header, ...rows] = parseCsv(csv.stdout);
    assert.deepEqual(header, Object.keys(json[0]!), 'columns = the JSON entry fields');
    const asText = (value: unknown) => (value === null ? '' : String(value));
    assert.deepEqual(rows, json.map((entry) => header!.map((field) => asText(entry[field]))));
    assert.ok(rows.some((row) => row.includes('top-up, "march"\nline two')), 'commas, quotes and newlines survive');

    const carol = parseCsv((await cli('ledger', '--csv', '--user', 'carol', '--kind', 'grant')).stdout);
    assert.strictEqual(carol.length, 2, 'header + carol\'s one grant');
  });

  QUnit.test('usage --group-by user|model|day: sums equal the ledger, most charged first', async (assert) => {
    const oracle = await db.pool.query<{ user_id: string; model: string; n: number; charged: string; upstream: string; prompt: number; completion: number }>(
      `select user_id, model, count(*)::integer as n, (-sum(amount_nano))::text as charged, sum(upstream_cost_nano)::text as upstream,
              sum(prompt_tokens)::integer as prompt, sum(completion_tokens)::integer as completion
         from ledger_entries where kind = 'usage' group by user_id, model`);
    const sum = (pick: (row: (typeof oracle.rows)[number]) => boolean) => {
      const rows = oracle.rows.filter(pick);
      const charged = formatNano(rows.reduce((a, r) => a + BigInt(r.charged), 0n));
      return {
        requests: rows.reduce((a, r) => a + r.n, 0), prompt_tokens: rows.reduce((a, r) => a + r.prompt, 0),
        completion_tokens: rows.reduce((a, r) => a + r.completion, 0),
        // cost_usd is charged_usd's old name, still sent until 0.2.
        charged_usd: charged, upstream_cost_usd: formatNano(rows.reduce((a, r) => a + BigInt(r.upstream), 0n)), cost_usd: charged,
      };
    };
    const byUser = await cli('usage', '--group-by', 'user', '--json');
    assert.strictEqual(byUser.code, 0, byUser.stderr);
    const userRows = (JSON.parse(byUser.stdout) as { data: Array<{ key: string; charged_usd: string }> }).data;
    assert.deepEqual(userRows, [...USERS].reverse().map((id) => ({ key: id, ...sum((r) => r.user_id === id) })), 'erin spent most, then dave, then carol');

    const byModel = (JSON.parse((await cli('usage', '--group-by', 'model', '--json')).stdout) as { data: Array<{ key: string }> }).data;
    assert.deepEqual(byModel.map((row) => row.key).sort(), [...MODELS].sort());
    for (const row of byModel) assert.deepEqual(row, { key: row.key, ...sum((r) => r.model === row.key) });

    const day = (JSON.parse((await cli('usage', '--group-by', 'day', '--json', '--user', 'carol')).stdout) as { data: Array<{ charged_usd: string }> }).data;
    assert.strictEqual(day.length, 1);
    assert.strictEqual(day[0]!.charged_usd, sum((r) => r.user_id === 'carol').charged_usd);

    const table = await cli('usage', '--group-by', 'user');
    assert.ok(table.stdout.includes(sum((r) => r.user_id === 'erin').charged_usd), 'the table shows the exact amount');
  });

  QUnit.test('users list sorts by balance and filters low balances', async (assert) => {
    const list = await cli('users', 'list', '--sort', 'balance', '--order', 'asc', '--balance-below', '5.00', '--json');
    assert.strictEqual(list.code, 0, list.stderr);
    const rows = (JSON.parse(list.stdout) as { data: Array<{ id: string; balance_usd: string }> }).data;
    const expected = [];
    for (const id of USERS) {
      const user = (await users.getUser(db.pool, id))!;
      if (user.balanceNano < usdTextToNano('5.00')) expected.push({ id, balance: user.balanceNano });
    }
    expected.sort((a, b) => (a.balance < b.balance ? -1 : 1));
    assert.ok(expected.length > 0);
    assert.deepEqual(rows.map((row) => [row.id, row.balance_usd]), expected.map((row) => [row.id, formatNano(row.balance)]));
  });

  QUnit.test('a cursor from nowhere exits 2', async (assert) => {
    for (const args of [['users', 'list', '--cursor', 'garbage'], ['requests', '--cursor', 'garbage'], ['ledger', '--cursor', 'x1']]) {
      const result = await cli(...args);
      assert.strictEqual(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      like(assert, result.stderr, /cursor/);
    }
  });

  QUnit.test('ledger --csv --output on a terminal draws a progress bar on stderr', async (assert) => {
    const file = path.join(dir, 'progress.csv');
    // `script` gives the CLI a pseudo-terminal, as an operator's shell would.
    const result = await runInTerminal(`${process.execPath} ${CLI_PATH} ledger --csv --output ${file}`, { DATABASE_URL: db.url });
    assert.strictEqual(result.code, 0, result.stdout);
    like(assert, result.stdout, /ledger export \[.*\] 100% \| (\d+)\/\1 entries/);
    const rows = parseCsv(await readFile(file, 'utf8'));
    const count = await db.pool.query<{ n: number }>('select count(*)::integer as n from ledger_entries');
    assert.strictEqual(rows.length, count.rows[0]!.n + 1, 'the file holds every entry and the header, no bar');
  });

  QUnit.test('requests lists unsettled by default and settled on request', async (assert) => {
    const open = await cli('requests', '--json');
    assert.strictEqual(open.code, 0, open.stderr);
    const rows = (JSON.parse(open.stdout) as { data: Array<{ id: string; state: string }> }).data;
    assert.deepEqual(rows.map((row) => row.id).sort(), [...openRequests].sort());
    assert.ok(rows.every((row) => row.state === 'awaiting_cost'));
    const settled = (JSON.parse((await cli('requests', '--state', 'settled', '--user', 'carol', '--json')).stdout) as { data: Array<{ user_id: string; upstream_cost_usd: string; cost_usd: string }> }).data;
    assert.ok(settled.length > 0 && settled.every((row) => row.user_id === 'carol' && row.upstream_cost_usd !== null && row.cost_usd === row.upstream_cost_usd));
  });

  QUnit.test('pricing: set-default, set-user, show; bad multipliers exit 2, unknown users 3', async (assert) => {
    assert.strictEqual((await cli('pricing', 'set-default', '1.25')).code, 0);
    assert.strictEqual((await cli('pricing', 'set-user', 'carol', '1.5')).code, 0);
    const carol = JSON.parse((await cli('pricing', 'show', 'carol', '--json')).stdout) as Record<string, string | null>;
    const dave = JSON.parse((await cli('pricing', 'show', 'dave', '--json')).stdout) as Record<string, string | null>;
    assert.deepEqual(carol, { user_id: 'carol', multiplier: '1.500000', default_multiplier: '1.250000', effective_multiplier: '1.500000' });
    assert.deepEqual(dave, { user_id: 'dave', multiplier: null, default_multiplier: '1.250000', effective_multiplier: '1.250000' });
    const shown = await cli('users', 'show', 'carol', '--json');
    assert.strictEqual((JSON.parse(shown.stdout) as Record<string, string>).effective_multiplier, '1.500000');
    assert.strictEqual((await cli('pricing', 'set-user', 'carol', 'default')).code, 0);
    const cleared = JSON.parse((await cli('pricing', 'show', 'carol', '--json')).stdout) as Record<string, string | null>;
    assert.strictEqual(cleared.multiplier, null);
    assert.strictEqual(cleared.effective_multiplier, '1.250000');
    for (const bad of ['0', '-1', '1.2345678', 'abc', '1001']) {
      const result = await cli('pricing', 'set-default', bad);
      assert.strictEqual(result.code, 2, `${bad}: ${result.stderr}`);
    }
    assert.strictEqual((await cli('pricing', 'set-user', 'ghost', '2')).code, 3);
    assert.strictEqual((await cli('pricing', 'show', 'ghost')).code, 3);
    assert.strictEqual((await cli('pricing', 'set-default', '1')).code, 0);
  });

  QUnit.test('verify exits 0 on good books and 1 (naming the user) once a balance disagrees with the ledger', async (assert) => {
    const good = await cli('verify');
    assert.strictEqual(good.code, 0, good.stdout + good.stderr);
    like(assert, good.stdout, /: OK\n/);
    // Break the books on purpose: move the running totals without a ledger row.
    await db.pool.query('update users set balance_nano = balance_nano + 7, credits_nano = credits_nano + 7 where id = $1::text', ['dave']);
    try {
      const bad = await cli('verify');
      assert.strictEqual(bad.code, 1);
      like(assert, bad.stdout, /BREACHES FOUND/);
      like(assert, bad.stdout, /\[BREACH\] balance = Σ ledger.*: 1\n.*"userId":"dave"/);
      like(assert, bad.stderr, /books check FAILED: 1 breach/);
      const json = await cli('verify', '--json');
      assert.strictEqual(json.code, 1);
      const report = JSON.parse(json.stdout) as { ok: boolean; breaches: { balance: { count: number; sample: Array<{ userId: string }> } } };
      assert.strictEqual(report.ok, false);
      assert.deepEqual(report.breaches.balance.sample.map((b) => b.userId), ['dave']);
    } finally {
      await db.pool.query('update users set balance_nano = balance_nano - 7, credits_nano = credits_nano - 7 where id = $1::text', ['dave']);
    }
    assert.strictEqual((await cli('verify')).code, 0, 'repaired');
  });

  QUnit.test('verify --rollups also compares every usage rollup with the ledger; a plain verify skips that (and says so)', async (assert) => {
    const good = await cli('verify', '--rollups');
    assert.strictEqual(good.code, 0, good.stdout + good.stderr);
    like(assert, good.stdout, /\[ok\] every usage rollup equals the sums over the ledger/);
    const week = await db.pool.query<{ user_id: string }>('select user_id from usage_user_weekly order by user_id, bucket limit 1');
    assert.strictEqual(week.rows.length, 1, 'the fixture has weekly rollup rows');
    await db.pool.query('update usage_user_weekly set charged_nano = charged_nano + 1 where user_id = $1::text', [week.rows[0]!.user_id]);
    try {
      const plain = await cli('verify');
      assert.strictEqual(plain.code, 0, 'the books themselves are fine');
      like(assert, plain.stdout, /\[skipped\] usage rollups/);
      const bad = await cli('verify', '--rollups');
      assert.strictEqual(bad.code, 1);
      like(assert, bad.stdout, /\[BREACH\] every usage rollup equals the sums over the ledger \(rows differing\): \d+\n.*"table":"usage_user_weekly"/);
    } finally {
      await db.pool.query('select usage_rollups_rebuild()');
    }
    assert.strictEqual((await cli('verify', '--rollups')).code, 0, 'usage_rollups_rebuild() repaired it');
  });
});
