import pg from 'pg';
import { isDatabaseUnavailable, sqlState, SqlState } from '@metergate/db';
import { createTestDatabase, freePort as closedPort, type TestDatabase } from '@metergate/testkit';
import { settle, within } from './helpers.js';


QUnit.module('pg-errors (real errors from Postgres and the driver)', (hooks) => {
  let db: TestDatabase;
  hooks.before(async () => { db = await createTestDatabase(); });
  hooks.after(async () => { await db.drop(); });

  QUnit.test('a bad query is a bug (500), not "database unavailable"', async (assert) => {
    const syntax = await settle(db.pool.query('selec 1'));
    assert.true(!syntax.ok && sqlState(syntax.error) === '42601', 'syntax error SQLSTATE');
    assert.false(!syntax.ok && isDatabaseUnavailable(syntax.error));
    const unique = await settle(db.pool.query(`insert into users (id) values ('dup'), ('dup')`));
    assert.true(!unique.ok && sqlState(unique.error) === SqlState.uniqueViolation);
    assert.false(!unique.ok && isDatabaseUnavailable(unique.error));
  });

  QUnit.test('a session ended by the server (57P01) and the dead client afterwards are "unavailable"', async (assert) => {
    const client = new pg.Client({ connectionString: db.url });
    const events: unknown[] = [];
    client.on('error', (error) => events.push(error));
    await client.connect();
    try {
      const pid = (client as unknown as { processID: number }).processID;
      const running = settle(client.query('select pg_sleep(5)'));
      await new Promise((resolve) => setTimeout(resolve, 100));
      await db.pool.query('select pg_terminate_backend($1::integer)', [pid]);
      const killed = await within(5_000, running);
      assert.true(!killed.ok && sqlState(killed.error) === SqlState.adminShutdown, `got ${!killed.ok && sqlState(killed.error)}`);
      assert.true(!killed.ok && isDatabaseUnavailable(killed.error));
      const after = await within(5_000, settle(client.query('select 1')));
      assert.true(!after.ok && isDatabaseUnavailable(after.error), 'a query on the dead client');
    } finally {
      await client.end().catch(() => undefined);
    }
  });

  QUnit.test('connection refused and socket codes are "unavailable" (EPIPE is not mistaken for a SQLSTATE)', async (assert) => {
    const port = await closedPort();
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'x', database: 'x', connectionTimeoutMillis: 2_000 });
    const refused = await within(5_000, settle(client.connect()));
    assert.true(!refused.ok && isDatabaseUnavailable(refused.error), 'ECONNREFUSED');
    for (const code of ['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH']) {
      assert.true(isDatabaseUnavailable(Object.assign(new Error(code), { code })), code);
    }
    assert.strictEqual(sqlState(Object.assign(new Error('x'), { code: 'ENOENT' })), undefined, 'six characters: not a SQLSTATE');
    assert.false(isDatabaseUnavailable(Object.assign(new Error('x'), { code: 'ENOENT' })), 'an unrelated code');
    assert.true(isDatabaseUnavailable(new Error('Connection terminated unexpectedly')), 'driver error without a code');
    assert.false(isDatabaseUnavailable('not an error'));
    assert.false(isDatabaseUnavailable(null));
    for (const state of ['08006', '57P01', '57P02', '57P03', '53300', '25P03']) {
      assert.true(isDatabaseUnavailable(Object.assign(new Error(state), { code: state })), state);
    }
  });
});
