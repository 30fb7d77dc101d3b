import { randomBytes, randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { loadMigrations, migrate, pricing, reports } from '@metergate/db';
import { balanceBreaches, testEnv, withDatabase } from '@metergate/testkit';
import { ledgerUsage, pick, prng, settleNew } from './reports-fixtures.js';

const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../migrations');

QUnit.module('reports: migration 0003 on a database that already has a ledger', () => {
  QUnit.test('backfills every rollup exactly from the existing usage; pricing starts at ×1', async (assert) => {
    const { adminUrl } = testEnv();
    const name = `mgtest_m3_${randomBytes(5).toString('hex')}`;
    const admin = new pg.Client({ connectionString: adminUrl });
    admin.on('error', () => undefined);
    await admin.connect();
    await admin.query(`create database ${name}`);
    const pool = new pg.Pool({ connectionString: withDatabase(adminUrl, name), max: 2 });
    pool.on('error', () => undefined);
    try {
      const all = await loadMigrations(MIGRATIONS_DIR);
      const before = all.filter((m) => m.name < '0003');
      assert.true(all.some((m) => m.name.startsWith('0003_')) && before.length === all.findIndex((m) => m.name.startsWith('0003_')));
      const client = await pool.connect();
      try {
        await migrate(client, before);
        await writeOldLedger(client);
        assert.strictEqual(await tableExists(client, 'usage_hourly'), false, 'before 0003: no rollups');
        assert.deepEqual(await migrate(client, all), all.slice(before.length).map((m) => m.name));
      } finally {
        client.release();
      }
      assert.deepEqual(await reports.rollupMismatches(pool), [], 'every rollup equals the sums over the pre-existing ledger');
      const since = new Date(Date.UTC(2024, 11, 30, 7, 30));
      const until = new Date(Date.UTC(2025, 1, 2, 3, 0));
      const byModel = await reports.usageSummary(pool, { groupBy: 'model', since, until, limit: 100 });
      const expected = await ledgerUsage(pool, `coalesce(model, '')`, { since, until });
      assert.deepEqual(byModel.map((r) => [r.key, r.requests, r.chargedNano]).sort(),
        [...expected].map(([key, e]) => [key, e.requests, e.charged]).sort(), 'a summary over the backfilled rollups');
      assert.strictEqual((await pricing.getPricing(pool)).defaultPpm, 1_000_000n, 'the default multiplier is ×1');
      await settleNew(pool, 'old-1', 'm/old', 777n);
      assert.deepEqual(await reports.rollupMismatches(pool), [], 'and a settle after the migration keeps them exact');
      assert.deepEqual(await balanceBreaches(pool), []);
    } finally {
      await pool.end();
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    }
  });
});

async function tableExists(client: pg.PoolClient, table: string): Promise<boolean> {
  const result = await client.query<{ present: boolean }>('select to_regclass($1::text) is not null as present', [table]);
  return result.rows[0]!.present;
}

/** A ledger as code before 0003 wrote it (charged = upstream, no multiplier column), over two months. */
async function writeOldLedger(client: pg.PoolClient): Promise<void> {
  const random = prng(31);
  for (let u = 1; u <= 4; u += 1) {
    await client.query(`insert into users (id) values ($1::text)`, [`old-${u}`]);
    await client.query(
      `with account as (update users set balance_nano = balance_nano + 1000000000, credits_nano = credits_nano + 1000000000
                         where id = $1::text returning id, balance_nano)
       insert into ledger_entries (user_id, kind, amount_nano, balance_after_nano, created_at)
       select id, 'grant', 1000000000, balance_nano, '2024-12-01T00:00:00Z' from account`, [`old-${u}`]);
  }
  let at = Date.UTC(2024, 11, 20);
  for (let i = 0; i < 150; i += 1) {
    at += Math.floor(random() * 12 * 3_600_000);
    const userId = `old-${1 + Math.floor(random() * 4)}`;
    const cost = BigInt(Math.floor(random() * 100_000));
    const requestId = randomUUID();
    const model = pick(random, ['m/old', 'm/older', null]);
    await client.query(
      `insert into requests (id, user_id, replica_id, model, stream, state, cost_nano, started_at, settled_at)
       values ($1::uuid, $2::text, 'old', $3::text, false, 'settled', $4::bigint, $5::timestamptz, $5::timestamptz)`,
      [requestId, userId, model, cost.toString(), new Date(at)]);
    await client.query(
      `with account as (update users set balance_nano = balance_nano - $2::bigint, usage_nano = usage_nano + $2::bigint
                         where id = $1::text returning id, balance_nano)
       insert into ledger_entries (user_id, kind, amount_nano, upstream_cost_nano, balance_after_nano, request_id, model,
                                   prompt_tokens, completion_tokens, created_at)
       select id, 'usage', -$2::bigint, $2::bigint, balance_nano, $3::uuid, $4::text, $5::integer, 7, $6::timestamptz from account`,
      [userId, cost.toString(), requestId, model, i % 5 === 0 ? null : i, new Date(at)]);
  }
}
