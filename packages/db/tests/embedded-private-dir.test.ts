import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { userInfo } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { removeEmbeddedPostgres } from '@metergate/db';
import { freePort } from '@metergate/testkit';
import { within } from './helpers.js';

// dist/tests/X.test.js → the repository root.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const run = promisify(execFile);

/**
 * Runs startEmbeddedPostgres in a child process whose copy of the checkout lives inside a 0700
 * folder, as `git clone` under root's home or `mktemp -d` gives: the `postgres` user that
 * Postgres runs as can reach neither the copy's binaries nor its .data/ there.
 */
const DRIVER = `
import { startEmbeddedPostgres } from '@metergate/db';
const [dataDir, port] = process.argv.slice(2);
try {
  const handle = await startEmbeddedPostgres({ dataDir, port: Number(port), settings: { fsync: 'off' } });
  process.stdout.write(JSON.stringify({ url: handle.url, owned: handle.owned }) + '\\n');
  process.stdin.resume();
  process.stdin.on('end', () => handle.stop().then(() => process.exit(0), (error) => { console.error(error); process.exit(1); }));
} catch (error) {
  process.stdout.write(JSON.stringify({ error: error instanceof Error ? error.message : String(error) }) + '\\n');
  process.exit(1);
}
`;

interface Launch { child: ChildProcess; result: { url?: string; owned?: boolean; error?: string }; stderr: () => string }

async function launch(checkout: string, dataDir: string, port: number): Promise<Launch> {
  const child = spawn(process.execPath, [path.join(checkout, 'driver.mjs'), dataDir, String(port)], {
    cwd: checkout, stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const lines = createInterface({ input: child.stdout! });
  const first = new Promise<string>((resolve) => {
    lines.once('line', resolve);
    child.once('exit', () => resolve(''));
  });
  const line = await within(90_000, first, 'the embedded Postgres start');
  const result = line === '' ? { error: `exited (${child.exitCode}) without an answer` } : JSON.parse(line) as Launch['result'];
  return { child, result, stderr: () => stderr };
}

async function finish(launched: Launch): Promise<number | null> {
  if (launched.child.exitCode !== null) return launched.child.exitCode;
  launched.child.stdin!.end();
  const [code] = (await within(30_000, once(launched.child, 'exit'), 'the embedded Postgres stop')) as [number | null];
  return code;
}

async function query(url: string, sql: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

QUnit.module('embedded Postgres from a 0700 folder', () => {
  QUnit.test('as root: starts, a second start joins, data persists across a restart', async (assert) => {
    if (userInfo().uid !== 0) {
      assert.true(true, 'skipped: only root runs Postgres as another user (the `postgres` user); not root here');
      return;
    }
    assert.timeout(240_000);
    const privateDir = path.join(ROOT, '.test-data', `private-${process.pid}`);
    const checkout = path.join(privateDir, 'mg');
    const dataDir = path.join(checkout, '.data', 'postgres');
    const launched: Launch[] = [];
    try {
      await mkdir(checkout, { recursive: true });
      await chmod(privateDir, 0o700);
      // Hard links (same file system, so instant): the copy's files are only reachable through
      // the 0700 folder, like a real clone's.
      await run('cp', ['-al', path.join(ROOT, 'node_modules'), path.join(ROOT, 'packages'), checkout]);
      await writeFile(path.join(checkout, 'driver.mjs'), DRIVER);
      const port = await freePort();

      const first = await launch(checkout, dataDir, port);
      launched.push(first);
      assert.deepEqual({ owned: first.result.owned, error: first.result.error }, { owned: true, error: undefined },
        `started (stderr: ${first.stderr().slice(0, 2000)})`);
      if (first.result.url === undefined) return;
      await query(first.result.url!, 'create table kept (v int); insert into kept values (42)');

      const second = await launch(checkout, dataDir, port);
      launched.push(second);
      assert.strictEqual(second.result.owned, false, 'a second start from the same checkout joins the running cluster');
      assert.strictEqual(await finish(second), 0);
      assert.strictEqual((await query(first.result.url!, 'select 1 as one')).rows[0].one, 1, 'joining and leaving did not stop it');

      assert.strictEqual(await finish(first), 0, 'stopped cleanly');
      const third = await launch(checkout, dataDir, port);
      launched.push(third);
      assert.strictEqual(third.result.owned, true, 'restarted');
      assert.deepEqual((await query(third.result.url!, 'select v from kept')).rows, [{ v: 42 }], 'the data survived the restart');
      assert.strictEqual(await finish(third), 0);

      // The cluster outlives a deleted .data/postgres/password: say so instead of failing logins.
      await rm(path.join(dataDir, 'password'));
      const orphaned = await launch(checkout, dataDir, port);
      launched.push(orphaned);
      assert.true(/found its cluster in .* but not the password .* To start afresh, delete /.test(orphaned.result.error ?? ''),
        `a sentence saying what to do: ${orphaned.result.error}`);
    } finally {
      for (const { child } of launched) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await removeEmbeddedPostgres(dataDir).catch(() => undefined); // cleanup: the test's verdict stands
      await rm(privateDir, { recursive: true, force: true });
    }
  });
});
