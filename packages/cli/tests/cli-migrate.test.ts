// `metergate migrate` on an empty database applies every migration in the repository; a
// second run applies nothing. The database is made empty here (not cloned from the template).
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { adminSql, testEnv, withDatabase } from '@metergate/testkit';
import { like, runCli } from './run-cli.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('../../../../migrations', import.meta.url));


QUnit.module('cli: migrate', () => {
  QUnit.test('applies every migration once to an empty database, then reports it up to date', async (assert) => {
    const name = `mgcli_${randomBytes(6).toString('hex')}`;
    await adminSql(`create database ${name}`);
    const env = { DATABASE_URL: withDatabase(testEnv().adminUrl, name) };
    try {
      const files = (await readdir(MIGRATIONS_DIR)).filter((file) => file.endsWith('.sql')).sort();
      const pending = await runCli(['migrate', '--status', '--json'], env);
      assert.strictEqual(pending.code, 0, pending.stderr);
      assert.deepEqual((JSON.parse(pending.stdout) as { pending: string[] }).pending, files);
      const first = await runCli(['migrate', '--json'], env);
      assert.strictEqual(first.code, 0, first.stderr);
      assert.deepEqual((JSON.parse(first.stdout) as { applied: string[] }).applied, files);
      const second = await runCli(['migrate'], env);
      assert.strictEqual(second.code, 0, second.stderr);
      like(assert, second.stdout, new RegExp(`up to date \\(${files.length} migrations\\)`));
      const verify = await runCli(['verify'], env);
      assert.strictEqual(verify.code, 0, `a freshly migrated database has sound books: ${verify.stdout}${verify.stderr}`);
    } finally {
      await adminSql(`drop database if exists ${name} with (force)`);
    }
  });

  QUnit.test('commands on an unmigrated database exit 1 and say to run migrate', async (assert) => {
    const name = `mgcli_${randomBytes(6).toString('hex')}`;
    await adminSql(`create database ${name}`);
    try {
      const result = await runCli(['users', 'show', 'alice'], { DATABASE_URL: withDatabase(testEnv().adminUrl, name) });
      assert.strictEqual(result.code, 1);
      like(assert, result.stderr, /not migrated.*metergate migrate/);
    } finally {
      await adminSql(`drop database if exists ${name} with (force)`);
    }
  });
});
