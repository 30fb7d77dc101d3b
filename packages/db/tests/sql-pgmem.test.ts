/**
 * Fast unit tests of pure SQL on pg-mem (an in-memory emulation of Postgres), loading the
 * REAL migrations/0001_ledger.sql with two documented adaptations, plus the one column of
 * 0007_holds.sql the users statements read (users.held_nano; 0007's other statements are
 * triggers and plpgsql, which pg-mem cannot load).
 *
 * What pg-mem 3.0.x cannot emulate, found by trying (the canary test below re-checks it):
 *  - plpgsql and CREATE TRIGGER: the file fails to parse. The append-only trigger
 *    (SQLSTATE MGL01) is therefore cut out here and tested on real Postgres (ledger.test.ts).
 *  - the `~` regex operator used by the users.id check: registered below with a JS RegExp,
 *    which reads that particular pattern (anchors, classes, {0,127}) the same way as POSIX.
 *  - data-modifying CTEs (`with x as (update …) insert …`): "Not supported". appendCredit
 *    and settleUsage are built on them, so every ledger statement is tested on real Postgres.
 *  - SQLSTATEs other than 23505: a check violation comes back without a `code`, so mapping
 *    of check violations is tested on real Postgres; here only "it is not swallowed" is.
 *  - unique-violation constraint names (it blames the primary key for a key_hash clash);
 *    our code reads SQLSTATEs only, never constraint names or messages, so that is harmless.
 *  - anything about locks, transactions and concurrency (advisory locks are absent, there is
 *    one connection): cost-barrier, pools-deadlock, migrate and ledger tests use real Postgres.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataType, newDb } from 'pg-mem';
import { keys, SqlState, sqlState, users, type Queryable } from '@metergate/db';
import { settle } from './helpers.js';

const MIGRATION = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../migrations/0001_ledger.sql');
const TRIGGER_START = 'create function ledger_entries_append_only()';
const TRIGGER_END = 'for each row execute function ledger_entries_append_only();';

function emptyDb(): ReturnType<typeof newDb> {
  const db = newDb();
  db.public.registerOperator({
    operator: '~', left: DataType.text, right: DataType.text, returns: DataType.bool,
    implementation: (value: string, pattern: string) => new RegExp(pattern).test(value),
  });
  return db;
}

/** 0001 minus the plpgsql trigger (see the header), as a node-postgres-compatible pool. */
async function memoryPool(): Promise<Queryable> {
  const sql = await readFile(MIGRATION, 'utf8');
  const start = sql.indexOf(TRIGGER_START);
  const end = sql.indexOf(TRIGGER_END);
  if (start < 0 || end < start) throw new Error('0001 no longer has the trigger this adaptation cuts out');
  const db = emptyDb();
  db.public.none(sql.slice(0, start) + sql.slice(end + TRIGGER_END.length));
  db.public.none('alter table users add column held_nano bigint not null default 0');
  const { Pool } = db.adapters.createPg() as { Pool: new () => Queryable };
  return new Pool();
}

QUnit.module('sql on pg-mem (pure SQL, no concurrency)', () => {
  QUnit.test('canary: pg-mem still cannot load 0001 unmodified (drop the adaptation when it can)', async (assert) => {
    const sql = await readFile(MIGRATION, 'utf8');
    assert.throws(() => emptyDb().public.none(sql), 'plpgsql / CREATE TRIGGER unsupported');
    assert.ok(await memoryPool(), 'loads once the trigger is cut out');
  });

  QUnit.test('insertUser: new row with zero totals; duplicate id → null; bad id is not swallowed', async (assert) => {
    const pool = await memoryPool();
    const alice = await users.insertUser(pool, 'alice');
    assert.deepEqual(alice && { id: alice.id, balance: alice.balanceNano, credits: alice.creditsNano, usage: alice.usageNano },
      { id: 'alice', balance: 0n, credits: 0n, usage: 0n });
    assert.true(alice?.createdAt instanceof Date);
    assert.strictEqual(await users.insertUser(pool, 'alice'), null, 'unique violation (23505) maps to null');
    assert.notStrictEqual(await users.insertUser(pool, 'Alice'), null, 'ids are case-sensitive');
    const bad = await settle(users.insertUser(pool, ' not valid'));
    assert.false(bad.ok, 'a check violation propagates (never mistaken for a duplicate)');
    assert.strictEqual((await users.getUser(pool, 'alice'))?.id, 'alice');
    assert.strictEqual(await users.getUser(pool, 'nobody'), null);
    assert.strictEqual(await users.readBalance(pool, 'alice'), 0n);
    assert.strictEqual(await users.readBalance(pool, 'nobody'), null);
  });

  QUnit.test('keys: insert for an existing user only, find by hash, revoke once and keep the first time', async (assert) => {
    const pool = await memoryPool();
    await users.insertUser(pool, 'alice');
    const hash = Buffer.from('0123456789abcdef0123456789abcdef');
    assert.true(await keys.insertKey(pool, { id: 'k1', userId: 'alice', hash }));
    assert.false(await keys.insertKey(pool, { id: 'k2', userId: 'nobody', hash: Buffer.from('other') }), 'unknown user → false');
    const clash = await settle(keys.insertKey(pool, { id: 'k3', userId: 'alice', hash }));
    assert.true(!clash.ok && sqlState(clash.error) === SqlState.uniqueViolation, 'the same hash twice is refused (23505)');
    assert.deepEqual(await keys.findKeyOwner(pool, hash), { keyId: 'k1', userId: 'alice', revoked: false });
    assert.strictEqual(await keys.findKeyOwner(pool, Buffer.from('unknown')), null);
    assert.true(await keys.revokeKey(pool, 'k1'));
    const first = await pool.query<{ at: Date }>(`select revoked_at as at from api_keys where id = 'k1'`);
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.true(await keys.revokeKey(pool, 'k1'), 'revoking twice still finds the key');
    const second = await pool.query<{ at: Date }>(`select revoked_at as at from api_keys where id = 'k1'`);
    assert.strictEqual(second.rows[0]!.at.getTime(), first.rows[0]!.at.getTime(), 'the first revocation time is kept');
    assert.deepEqual(await keys.findKeyOwner(pool, hash), { keyId: 'k1', userId: 'alice', revoked: true });
    assert.false(await keys.revokeKey(pool, 'nope'), 'unknown key → false');
  });
});
