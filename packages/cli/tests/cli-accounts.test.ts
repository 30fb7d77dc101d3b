// The operator CLI run as a real process against a fresh database: users, keys, credits, and
// the exit codes scripts rely on (0 ok, 1 failure, 2 usage, 3 not found, 4 conflict).
import { formatNano, keys, usdTextToNano, users } from '@metergate/db';
import { hashApiKey } from '@metergate/server';
import { createTestDatabase, type TestDatabase } from '@metergate/testkit';
import { like, runCli, type CliResult } from './run-cli.js';

QUnit.module('cli: users, keys, credits and exit codes', (hooks) => {
  let db: TestDatabase;
  let cli: (...args: string[]) => Promise<CliResult>;
  hooks.before(async () => {
    db = await createTestDatabase();
    cli = (...args) => runCli(args, { DATABASE_URL: db.url });
  });
  hooks.after(async () => { await db.drop(); });

  async function ledgerRows(): Promise<number> {
    const result = await db.pool.query<{ n: number }>('select count(*)::integer as n from ledger_entries');
    return result.rows[0]!.n;
  }

  QUnit.test('users create prints the key once; it is stored only as a hash and authenticates', async (assert) => {
    const created = await cli('users', 'create', 'alice', '--grant', '2.50', '--note', 'welcome', '--json');
    assert.strictEqual(created.code, 0, created.stderr);
    const body = JSON.parse(created.stdout) as { id: string; api_key: string; key_id: string; balance_usd: string };
    assert.strictEqual(body.id, 'alice');
    assert.strictEqual(body.balance_usd, formatNano(usdTextToNano('2.50')), 'the grant landed in the same transaction');
    const owner = await keys.findKeyOwner(db.pool, hashApiKey(body.api_key));
    assert.deepEqual(owner, { keyId: body.key_id, userId: 'alice', revoked: false });
    const stored = await db.pool.query<{ n: number }>('select count(*)::integer as n from api_keys where key_hash = convert_to($1::text, \'utf8\')', [body.api_key]);
    assert.strictEqual(stored.rows[0]!.n, 0, 'the key itself is not stored');

    const table = await cli('users', 'create', 'bob');
    assert.strictEqual(table.code, 0, table.stderr);
    const key = /api_key\s+(\S+)/.exec(table.stdout)?.[1];
    assert.ok(key !== undefined && (await keys.findKeyOwner(db.pool, hashApiKey(key)))?.userId === 'bob', 'the human output shows a working key');
    like(assert, table.stderr, /shown only this once/);
  });

  QUnit.test('duplicate user exits 4; an invalid id exits 2; nothing is written', async (assert) => {
    const before = await ledgerRows();
    const again = await cli('users', 'create', 'alice', '--grant', '1');
    assert.strictEqual(again.code, 4, again.stderr);
    like(assert, again.stderr, /alice already exists/);
    const invalid = await cli('users', 'create', 'no spaces please');
    assert.strictEqual(invalid.code, 2, invalid.stderr);
    like(assert, invalid.stderr, /invalid user id/);
    assert.strictEqual(await users.getUser(db.pool, 'no spaces please'), null);
    assert.strictEqual(await ledgerRows(), before, 'the duplicate\'s grant rolled back');
  });

  QUnit.test('credits grant and adjust are exact to the nano-dollar and show in users show', async (assert) => {
    const before = (await users.getUser(db.pool, 'bob'))!.balanceNano;
    const grant = await cli('credits', 'grant', 'bob', '5.25', '--note', 'top-up', '--json');
    assert.strictEqual(grant.code, 0, grant.stderr);
    const entry = JSON.parse(grant.stdout) as { kind: string; amount_usd: string; note: string };
    assert.deepEqual([entry.kind, entry.amount_usd, entry.note], ['grant', formatNano(usdTextToNano('5.25')), 'top-up']);
    const adjust = await cli('credits', 'adjust', 'bob', '-0.000000001', '--note', 'rounding');
    assert.strictEqual(adjust.code, 0, adjust.stderr);
    const expected = before + usdTextToNano('5.25') - 1n;
    assert.strictEqual((await users.getUser(db.pool, 'bob'))!.balanceNano, expected);
    const show = await cli('users', 'show', 'bob', '--json');
    assert.strictEqual(show.code, 0, show.stderr);
    assert.strictEqual((JSON.parse(show.stdout) as { balance_usd: string }).balance_usd, formatNano(expected));
    const human = await cli('users', 'show', 'bob');
    assert.ok(human.stdout.includes(formatNano(expected)), 'the table shows all nine decimals');
  });

  QUnit.test('keys create and revoke', async (assert) => {
    const created = await cli('keys', 'create', 'alice', '--json');
    assert.strictEqual(created.code, 0, created.stderr);
    const key = JSON.parse(created.stdout) as { id: string; api_key: string };
    const revoke = await cli('keys', 'revoke', key.id);
    assert.strictEqual(revoke.code, 0, revoke.stderr);
    assert.deepEqual(await keys.findKeyOwner(db.pool, hashApiKey(key.api_key)), { keyId: key.id, userId: 'alice', revoked: true });
  });

  QUnit.test('unknown user or key exits 3', async (assert) => {
    for (const args of [['users', 'show', 'ghost'], ['credits', 'grant', 'ghost', '1'], ['credits', 'adjust', 'ghost', '-1'],
      ['keys', 'create', 'ghost'], ['keys', 'revoke', 'key_nope']]) {
      const result = await cli(...args);
      assert.strictEqual(result.code, 3, `${args.join(' ')}: ${result.stderr}`);
      like(assert, result.stderr, /no (user ghost|key key_nope)/);
    }
  });

  QUnit.test('bad flags and values exit 2 with a message naming the problem, and change nothing', async (assert) => {
    const before = await ledgerRows();
    const cases: Array<[string[], RegExp]> = [
      [['credits', 'grant', 'alice', '1.0000000001'], /at most 9 decimals/],
      [['credits', 'grant', 'alice', '1e3'], /USD decimal/],
      [['credits', 'grant', 'alice', '0'], /must be positive/],
      [['credits', 'grant', 'alice', '-2'], /must be positive/],
      [['credits', 'adjust', 'alice', '0.000'], /must not be zero/],
      [['ledger', '--since', 'yesterday'], /RFC 3339/],
      [['ledger', '--since', '2025-02-30'], /RFC 3339/],
      [['ledger', '--limit', '0'], /whole number/],
      [['ledger', '--kind', 'refund'], /Allowed choices are grant, usage, adjustment/],
      [['ledger', '--json', '--csv'], /cannot be used with/],
      [['usage'], /--group-by/],
      [['usage', '--group-by', 'week'], /Allowed choices/],
      [['users', 'frobnicate'], /unknown command/],
      [['users', 'list', '--nope'], /unknown option/],
      [['credits', 'grant', 'alice'], /missing required argument/],
    ];
    for (const [args, message] of cases) {
      const result = await cli(...args);
      assert.strictEqual(result.code, 2, `${args.join(' ')} → exit ${result.code}`);
      like(assert, result.stderr, message, args.join(' '));
    }
    assert.strictEqual(await ledgerRows(), before);
  });

  QUnit.test('configuration: DATABASE_URL unset or malformed exits 2; unreachable exits 1', async (assert) => {
    const unset = await runCli(['users', 'show', 'alice'], {});
    assert.strictEqual(unset.code, 2);
    like(assert, unset.stderr, /DATABASE_URL is not set/);
    const wrong = await runCli(['users', 'show', 'alice'], { DATABASE_URL: 'mysql://localhost/x' });
    assert.strictEqual(wrong.code, 2);
    like(assert, wrong.stderr, /postgres:\/\//);
    const url = new URL(db.url);
    url.port = '1';
    url.password = 'secret-password';
    const down = await runCli(['users', 'show', 'alice'], { DATABASE_URL: url.toString() });
    assert.strictEqual(down.code, 1);
    assert.ok(down.stderr.includes(`cannot reach the database at ${url.hostname}:1/`), down.stderr);
    assert.notOk(down.stderr.includes('secret-password'), 'the password is never printed');
  });

  QUnit.test('--help documents the design and the exit codes; exits 0', async (assert) => {
    const help = await runCli(['--help'], {});
    assert.strictEqual(help.code, 0);
    like(assert, help.stdout, /DATABASE_URL/);
    like(assert, help.stdout, /4 {2}conflict/);
  });
});
