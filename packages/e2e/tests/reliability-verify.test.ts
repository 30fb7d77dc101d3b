// `npm run verify` (packages/server/dist/src/verify.js) as a real process: OK on consistent
// books, non-zero with a summary naming each breach.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { REPO_ROOT } from '@metergate/testkit';
import { chatBody, FAST_ENV, post, settledEventually, startFixture, type Fixture } from './reliability-helpers.js';

const VERIFY = path.join(REPO_ROOT, 'packages/server/dist/src/verify.js');

function runVerify(databaseUrl: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [VERIFY], {
      cwd: REPO_ROOT, timeout: 20_000,
      env: { PATH: process.env.PATH ?? '', NODE_ENV: 'test', DATABASE_URL: databaseUrl, ...FAST_ENV },
    }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

QUnit.module('reliability: npm run verify', (hooks) => {
  let f: Fixture;
  hooks.before(async () => { f = await startFixture(); });
  hooks.after(async () => { await f?.close(); });

  QUnit.test('consistent books: exit 0 and a summary; each kind of breach: exit 1 and named', async (assert) => {
    const replica = await f.spawn();
    const key = await f.createUser(replica, 'books');
    const response = await post(replica.url, key, chatBody({ completion_tokens: 4 }));
    await response.text();
    await settledEventually(f.db, 'books');

    const clean = await runVerify(f.db.url);
    assert.strictEqual(clean.code, 0, `exit 0 on consistent books: ${clean.stdout}${clean.stderr}`);
    assert.true(clean.stdout.includes(': OK') && clean.stdout.includes('"settled":1'), 'prints the summary');

    // The replica's reconciler would close the orphan below (as it should), and under load it
    // did so before a stop that came after the inserts: stop it first.
    assert.strictEqual(await replica.stop(10_000), 0, 'the replica stopped cleanly');
    // A settled request without its usage entry, and an in_flight one of a replica long silent.
    const pool = f.db.pool;
    await pool.query(
      `insert into requests (id, user_id, replica_id, stream, state, cost_nano, settled_at)
       values ($1::uuid, 'books', 'ghost', true, 'settled', 5, now())`, [randomUUID()]);
    await pool.query(`insert into replicas (id, heartbeat_at) values ('ghost', now() - interval '1 hour')`);
    await pool.query(
      `insert into requests (id, user_id, replica_id, stream, state, updated_at)
       values ($1::uuid, 'books', 'ghost', true, 'in_flight', now() - interval '1 hour')`, [randomUUID()]);

    const broken = await runVerify(f.db.url);
    assert.strictEqual(broken.code, 1, 'exit 1 on a breach');
    assert.true(broken.stdout.includes('BREACHES FOUND'), 'says so');
    assert.true(/\[BREACH\] every settled request has exactly one usage entry: 1/.test(broken.stdout), 'names the settled request without usage');
    assert.true(/\[BREACH\] no request left in_flight past lease \+ reconcile interval: 1/.test(broken.stdout), 'names the stale in-flight request');
    assert.true(/\[ok\] balance = Σ ledger/.test(broken.stdout), 'balances still check out');
  });
});
