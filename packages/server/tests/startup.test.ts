// `npm start` (packages/server/dist/src/main.js) as a real process: what it says when the
// embedded Postgres cannot have its port, and when it provisions the funded demo user.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { removeEmbeddedPostgres } from '@metergate/db';
import { createTestDatabase, freePort, REPO_ROOT, startSimulator, testEnv } from '@metergate/testkit';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/main.js');

interface MainRun {
  child: ChildProcess;
  output: () => string;
  /** The URL of the start-up banner, or null if the process exited first. */
  started: Promise<string | null>;
  exit: Promise<number | null>;
  stop(): Promise<number | null>;
}

/**
 * main.js with only the given environment (plus PATH): nothing of the test run's own
 * environment (DATABASE_URL above all) leaks in. NODE_ENV is unset unless given, as for a
 * newcomer's `npm start`.
 */
function runMain(env: Record<string, string>): MainRun {
  const child = spawn(process.execPath, [MAIN], {
    cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'warn', ...env },
  });
  let output = '';
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const started = new Promise<string | null>((resolve) => {
    for (const stream of [child.stdout!, child.stderr!]) {
      stream.setEncoding('utf8').on('data', (chunk: string) => {
        output += chunk;
        // The banner's last line is printed in the same write as its first.
        const banner = /Metergate is running at (\S+)[\s\S]*\n$/.exec(output);
        if (banner !== null) resolve(banner[1]!);
      });
    }
    void exit.then(() => resolve(null));
  });
  return {
    child, output: () => output, started, exit,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      try {
        return await exit;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

async function bounded<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
    })]);
  } finally {
    clearTimeout(timer);
  }
}

async function demoUsers(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<{ n: number }>("select count(*)::int as n from users where id = 'demo'")).rows[0]!.n;
  } finally {
    await client.end();
  }
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
  });
}

QUnit.module('npm start: start-up', () => {
  QUnit.test('EMBEDDED_PG_PORT held by another Postgres cluster: a sentence naming the port, its holder and what to set', async (assert) => {
    assert.timeout(90_000);
    // The suite's own cluster is "another cluster" for a checkout dir that has never run one.
    const admin = new URL(testEnv().adminUrl);
    if (!['127.0.0.1', 'localhost'].includes(admin.hostname)) {
      assert.true(true, 'skipped: DATABASE_URL points at a Postgres that is not on this machine, so no local port holds one');
      return;
    }
    const dataDir = path.join(REPO_ROOT, '.test-data', `startup-held-${process.pid}`);
    const run = runMain({ EMBEDDED_PG_PORT: admin.port || '5432', EMBEDDED_PG_DIR: dataDir });
    try {
      assert.strictEqual(await bounded(60_000, run.exit, 'main.js exit'), 1, 'exits 1');
      const text = run.output();
      assert.true(text.includes(`127.0.0.1:${admin.port}`), `names the port: ${text}`);
      assert.true(text.includes('another Postgres cluster'), 'says what holds it');
      assert.true(/pid \d+: \S*postgres/.test(text), 'names the holding process');
      assert.true(text.includes('EMBEDDED_PG_PORT') && text.includes('DATABASE_URL'), 'says what to set');
      assert.false(/undefined|\n\s+at /.test(text), 'no "undefined", no stack trace');
    } finally {
      await run.stop();
      await removeEmbeddedPostgres(dataDir);
    }
  });

  QUnit.test('EMBEDDED_PG_PORT held by a program that is not Postgres: names the process', async (assert) => {
    assert.timeout(90_000);
    const squatter = createServer((socket) => socket.destroy());
    const port = await listen(squatter);
    const dataDir = path.join(REPO_ROOT, '.test-data', `startup-squat-${process.pid}`);
    const run = runMain({ EMBEDDED_PG_PORT: String(port), EMBEDDED_PG_DIR: dataDir });
    try {
      assert.strictEqual(await bounded(60_000, run.exit, 'main.js exit'), 1, 'exits 1');
      const text = run.output();
      assert.true(text.includes(`127.0.0.1:${port}`), `names the port: ${text}`);
      assert.true(text.includes(`pid ${process.pid}: `), 'names the holder (this test process)');
      assert.true(text.includes('EMBEDDED_PG_PORT') && text.includes('DATABASE_URL'), 'says what to set');
      assert.false(/undefined|\n\s+at /.test(text), 'no "undefined", no stack trace');
    } finally {
      await run.stop();
      squatter.close();
      await removeEmbeddedPostgres(dataDir);
    }
  });

  QUnit.test('no demo user against a real DATABASE_URL, even with the simulator and NODE_ENV unset', async (assert) => {
    assert.timeout(90_000);
    const db = await createTestDatabase();
    const run = runMain({ DATABASE_URL: db.url });
    try {
      const url = await bounded(60_000, run.started, 'main.js start');
      assert.notStrictEqual(url, null, `started: ${run.output()}`);
      assert.false(run.output().includes('Demo user'), `no demo banner: ${run.output()}`);
      assert.strictEqual(await demoUsers(db.url), 0, 'no demo user in the database');
      assert.strictEqual(await run.stop(), 0);
    } finally {
      await run.stop();
      await db.drop();
    }
  });

  QUnit.test('no demo user with a real OPENROUTER_API_KEY on the embedded Postgres; demo only with both defaults', async (assert) => {
    assert.timeout(240_000);
    const dataDir = path.join(REPO_ROOT, '.test-data', `startup-demo-${process.pid}`);
    const port = String(await freePort());
    const upstream = await startSimulator({ host: '127.0.0.1', port: 0, apiKey: 'sk-or-startup-test' });
    const runs: MainRun[] = [];
    try {
      const keyed = runMain({ EMBEDDED_PG_DIR: dataDir, EMBEDDED_PG_PORT: port,
        OPENROUTER_API_KEY: 'sk-or-startup-test', OPENROUTER_BASE_URL: upstream.url });
      runs.push(keyed);
      assert.notStrictEqual(await bounded(180_000, keyed.started, 'main.js start'), null, `started: ${keyed.output()}`);
      const password = (await readFile(path.join(dataDir, 'password'), 'utf8')).trim();
      const dbUrl = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
      assert.false(keyed.output().includes('Demo user'), `no demo banner: ${keyed.output()}`);
      assert.strictEqual(await demoUsers(dbUrl), 0, 'no demo user in the database');
      assert.strictEqual(await keyed.stop(), 0);

      // The control: embedded Postgres and the simulator, as `npm start` with nothing set.
      const defaults = runMain({ EMBEDDED_PG_DIR: dataDir, EMBEDDED_PG_PORT: port });
      runs.push(defaults);
      assert.notStrictEqual(await bounded(120_000, defaults.started, 'main.js start'), null, `started: ${defaults.output()}`);
      assert.true(defaults.output().includes('Demo user "demo"'), 'the demo is provisioned and printed');
      assert.strictEqual(await demoUsers(dbUrl), 1);
      assert.strictEqual(await defaults.stop(), 0);
    } finally {
      for (const run of runs) await run.stop();
      await upstream.close();
      await removeEmbeddedPostgres(dataDir);
    }
  });
});
