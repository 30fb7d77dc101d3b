import pg from 'pg';
import { isDatabaseUnavailable, sqlState, SqlState } from '@metergate/db';
import { createTestDatabase, freePort as closedPort, startTcpProxy, type TestDatabase } from '@metergate/testkit';
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
      await client.end().catch(() => undefined); // the connection was cut on purpose
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
    assert.true(isDatabaseUnavailable(new Error('Connection terminated unexpectedly')), "the driver's own connection-loss error");
    assert.false(isDatabaseUnavailable('not an error'));
    assert.false(isDatabaseUnavailable(null));
    for (const state of ['08006', '57P01', '57P02', '57P03', '53300', '25P03']) {
      assert.true(isDatabaseUnavailable(Object.assign(new Error(state), { code: state })), state);
    }
  });

  QUnit.test('programmer errors are never "unavailable", whatever they lack (500, not 503)', (assert) => {
    // The 5,000-deep JSON body once reached the error handler as this RangeError and was
    // answered 503 database_unavailable because it carried no SQLSTATE.
    let overflow: unknown;
    try {
      JSON.stringify(JSON.parse('['.repeat(100_000) + ']'.repeat(100_000)));
    } catch (error) {
      overflow = error;
    }
    assert.true(overflow instanceof RangeError, 'a real stack overflow');
    assert.false(isDatabaseUnavailable(overflow), 'stack overflow');
    assert.false(isDatabaseUnavailable(new TypeError("Cannot read properties of undefined (reading 'x')")), 'TypeError');
    assert.false(isDatabaseUnavailable(new Error('some bug')), 'a plain Error without a code');
    assert.false(isDatabaseUnavailable(new Error('Connection terminated unexpectedly, sort of')), 'only the driver\'s exact errors');
    assert.false(isDatabaseUnavailable(Object.assign(new Error('x'), { code: 'ERR_ASSERTION' })), 'an assertion');
    assert.false(isDatabaseUnavailable(Object.assign(new Error('x'), { code: '22021' })), 'bad text (22021) is the input, not the database');
    assert.true(isDatabaseUnavailable(new Error('wrapped', { cause: Object.assign(new Error('x'), { code: 'ECONNREFUSED' }) })), 'a cause that is a socket error');
  });

  QUnit.test('a connection cut under a running query (real driver errors) is "unavailable"', async (assert) => {
    const url = new URL(db.url);
    const proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port) });
    const client = new pg.Client({ connectionString: proxy.via(db.url) });
    client.on('error', () => undefined);
    try {
      await client.connect();
      const running = settle(client.query('select pg_sleep(5)'));
      await new Promise((resolve) => setTimeout(resolve, 100));
      proxy.pause();
      const cut = await within(5_000, running);
      assert.true(!cut.ok && isDatabaseUnavailable(cut.error), `the cut query: ${!cut.ok && String(cut.error)}`);
      const after = await within(5_000, settle(client.query('select 1')));
      assert.true(!after.ok && isDatabaseUnavailable(after.error), `a query on the cut client: ${!after.ok && String(after.error)}`);
    } finally {
      await client.end().catch(() => undefined); // the connection was cut on purpose
      await proxy.close();
    }
  });

  QUnit.test("the pool's own connect timeout (no client free) is \"unavailable\"", async (assert) => {
    const pool = new pg.Pool({ connectionString: db.url, max: 1, connectionTimeoutMillis: 200 });
    const held = await pool.connect();
    try {
      const waited = await within(5_000, settle(pool.query('select 1')));
      assert.true(!waited.ok && isDatabaseUnavailable(waited.error), `pool timeout: ${!waited.ok && String(waited.error)}`);
    } finally {
      held.release();
      await pool.end();
    }
  });
});
