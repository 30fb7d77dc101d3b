import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { loadMigrations, migrate, MigrationError, pendingMigrations, type Migration } from '@metergate/db';
import { adminSql, testEnv, withDatabase } from '@metergate/testkit';
import { settle, within } from './helpers.js';

// dist/tests/migrate.test.js → the repository root.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const MIGRATIONS_DIR = path.join(ROOT, 'migrations');


/** A brand-new EMPTY database (not the migrated template). */
async function emptyDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `mgtest_empty_${randomBytes(5).toString('hex')}`;
  await adminSql(`create database ${name} template template0`);
  return { url: withDatabase(testEnv().adminUrl, name), drop: () => adminSql(`drop database if exists ${name} with (force)`) };
}

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function tempMigrations(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mgtest-migrations-'));
  for (const [name, sql] of Object.entries(files)) await writeFile(path.join(dir, name), sql);
  return dir;
}

function edited(migration: Migration, sql: string): Migration {
  return { ...migration, sql, checksum: createHash('sha256').update(sql).digest('hex') };
}

QUnit.module('migrate', () => {
  QUnit.test('5 concurrent runs on an empty database apply each migration exactly once; a re-run is a no-op', async (assert) => {
    const migrations = await loadMigrations(MIGRATIONS_DIR);
    assert.true(migrations.length >= 1, `${migrations.length} shipped migrations`);
    const db = await emptyDatabase();
    const clients = Array.from({ length: 5 }, () => new pg.Client({ connectionString: db.url }));
    try {
      await Promise.all(clients.map((c) => c.connect()));
      assert.deepEqual(await pendingMigrations(clients[0]!, migrations), migrations.map((m) => m.name), 'all pending at first');
      const outcomes = await within(30_000, Promise.all(clients.map((c) => settle(migrate(c, migrations)))));
      assert.deepEqual(outcomes.filter((o) => !o.ok), [], 'no run failed');
      const applied = outcomes.flatMap((o) => (o.ok ? o.value : []));
      assert.deepEqual([...applied].sort(), migrations.map((m) => m.name).sort(), 'every migration applied by exactly one run');
      const rows = await clients[0]!.query<{ name: string; checksum: string }>('select name, checksum from schema_migrations order by name');
      assert.deepEqual(rows.rows, migrations.map((m) => ({ name: m.name, checksum: m.checksum })));
      assert.deepEqual(await pendingMigrations(clients[0]!, migrations), []);
      assert.deepEqual(await migrate(clients[1]!, migrations), [], 're-run applies nothing');
      const count = await clients[0]!.query<{ n: number }>('select count(*)::integer as n from schema_migrations');
      assert.strictEqual(count.rows[0]!.n, migrations.length);
      const locks = await clients[2]!.query<{ n: number }>(
        `select count(*)::integer as n from pg_locks where locktype = 'advisory'
            and database = (select oid from pg_database where datname = current_database())`);
      assert.strictEqual(locks.rows[0]!.n, 0, 'the migration lock was released by every run');
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
      await db.drop();
    }
  });

  QUnit.test('an edited, already-applied migration is refused with MigrationError', async (assert) => {
    const migrations = await loadMigrations(MIGRATIONS_DIR);
    const db = await emptyDatabase();
    try {
      await withClient(db.url, async (client) => {
        await migrate(client, migrations);
        const tampered = migrations.map((m, i) => (i === 0 ? edited(m, `${m.sql}\n-- edited\n`) : m));
        const outcome = await settle(migrate(client, tampered));
        assert.true(!outcome.ok && outcome.error instanceof MigrationError, 'MigrationError');
        assert.true(!outcome.ok && String((outcome.error as Error).message).includes(migrations[0]!.name), 'names the file');
        const locks = await client.query<{ n: number }>(`select count(*)::integer as n from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()`);
        assert.strictEqual(locks.rows[0]!.n, 0, 'the migration lock was released after the refusal');
      });
    } finally {
      await db.drop();
    }
  });

  QUnit.test('a failing migration rolls back and is not recorded; earlier ones stay applied', async (assert) => {
    const db = await emptyDatabase();
    const dir = await tempMigrations({
      '0001_good.sql': 'create table mg_good (id integer primary key);',
      '0002_bad.sql': 'create table mg_half (id integer); select no_such_function();',
    });
    try {
      const migrations = await loadMigrations(dir);
      await withClient(db.url, async (client) => {
        const outcome = await settle(migrate(client, migrations));
        assert.true(!outcome.ok && outcome.error instanceof MigrationError, 'MigrationError');
        const names = await client.query<{ name: string }>('select name from schema_migrations');
        assert.deepEqual(names.rows.map((r) => r.name), ['0001_good.sql']);
        const half = await client.query<{ t: string | null }>(`select to_regclass('mg_half')::text as t`);
        assert.strictEqual(half.rows[0]!.t, null, 'the failed migration left nothing behind');
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
      await db.drop();
    }
  });

  QUnit.test('loadMigrations reads numbered files in order and rejects misnumbered or misnamed ones', async (assert) => {
    // A gap is allowed: numbers are reserved for branches in advance (0011 may land before 0009).
    const good = await tempMigrations({ '0002_b.sql': 'select 2;', '0001_a.sql': 'select 1;', '0004_d.sql': 'select 4;', 'README.md': 'ignored' });
    try {
      const loaded = await loadMigrations(good);
      assert.deepEqual(loaded.map((m) => m.name), ['0001_a.sql', '0002_b.sql', '0004_d.sql']);
      assert.strictEqual(loaded[0]!.checksum, createHash('sha256').update('select 1;').digest('hex'));
    } finally {
      await rm(good, { recursive: true, force: true });
    }
    const bad: Array<[string, Record<string, string>]> = [
      ['duplicate number', { '0001_a.sql': '', '0001_b.sql': '' }],
      ['not starting at 1', { '0002_b.sql': '' }],
      ['bad name', { '0001_a.sql': '', '0002-B.sql': '' }],
      ['short number', { '1_a.sql': '' }],
    ];
    for (const [what, files] of bad) {
      const dir = await tempMigrations(files);
      try {
        const outcome = await settle(loadMigrations(dir));
        assert.true(!outcome.ok && outcome.error instanceof MigrationError, what);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
  });
});
