#!/usr/bin/env node
// `npm run seed:ledger`: loads a large, consistent ledger for the reporting benchmark.
//
//   node scripts/seed-ledger.mjs [--rows 10000000] [--users 100000] [--days 365] [--chunk 250000]
//
// Target: DATABASE_URL if set, else an embedded Postgres under .data/bench-pg (never the dev
// cluster in .data/postgres), port BENCH_PG_PORT (default 54339). Migrations are applied first.
//
// Everything is generated in SQL (INSERT ... SELECT over generate_series), one transaction per
// chunk of ids, each chunk keeping the books exact exactly as the server does:
//   - ids 1..users are each user's opening grant; later ids are usage (99.45%), top-up grants
//     (0.5%) and adjustments (0.05%) at evenly spaced times over the last --days days, users
//     and models drawn with a skew (a few heavy users and popular models, a long tail);
//   - usage is priced like settleUsage: charged = ceil(upstream × multiplier_ppm / 1e6), with
//     10% of users at ×1.5 and 10% at ×1.2 (the default stays ×1.0);
//   - balance_after_nano is the user's balance at the chunk start plus a running sum (window
//     function) in id order, and the users' running totals are advanced by the chunk's sums
//     in the same transaction, so balance = Σ ledger holds after every chunk;
//   - the rollups are advanced by usage_rollups_add(lo, hi) (migration 0003), the bulk twin of
//     the settle statement's upserts; every usage entry gets its settled `requests` row.
// Triggers: the seeding session sets session_replication_role = replica, which skips the
// foreign-key triggers on ledger_entries.user_id and requests.user_id. Each FK check locks the
// referenced users row (FOR KEY SHARE) for every inserted row, which made the load ~3x slower,
// and the seed cannot break them: user ids are generated from 1..--users, all inserted first.
// The end of the seed checks that every ledger and request row has its user anyway. (The
// ledger's append-only trigger is also skipped in that session; we only insert.) Without the
// privilege to set it (not a superuser), the seed runs with the triggers, only slower.
// Ids are given explicitly (OVERRIDING SYSTEM VALUE) so id order is time order; the identity
// sequence is moved past them at the end. A killed seed resumes from the last whole chunk.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { loadMigrations, migrate, startEmbeddedPostgres } from '@metergate/db';
import { ROOT } from './lib/throwaway-pg.mjs';

export const BENCH_PG_DIR = path.join(ROOT, '.data', 'bench-pg');
const DEFAULTS = { rows: 10_000_000, users: 100_000, days: 365, chunk: 250_000 };

/** Twenty models with (input, output) prices in USD per million tokens (= 1000 nano-USD per token), most popular first. */
const MODELS = [
  ['openai/gpt-4o-mini', 0.15, 0.6], ['openai/gpt-4o', 2.5, 10], ['anthropic/claude-3.5-sonnet', 3, 15],
  ['google/gemini-flash-1.5', 0.075, 0.3], ['meta-llama/llama-3.1-70b-instruct', 0.52, 0.75],
  ['anthropic/claude-3-haiku', 0.25, 1.25], ['mistralai/mistral-large', 2, 6], ['openai/o1-mini', 3, 12],
  ['deepseek/deepseek-chat', 0.14, 0.28], ['qwen/qwen-2.5-72b-instruct', 0.35, 0.4],
  ['google/gemini-pro-1.5', 1.25, 5], ['meta-llama/llama-3.1-8b-instruct', 0.055, 0.055],
  ['openai/o1', 15, 60], ['anthropic/claude-3-opus', 15, 75], ['mistralai/mistral-nemo', 0.13, 0.13],
  ['cohere/command-r-plus', 2.5, 10], ['x-ai/grok-beta', 5, 15], ['nousresearch/hermes-3-llama-3.1-405b', 1.79, 2.49],
  ['microsoft/wizardlm-2-8x22b', 0.5, 0.5], ['perplexity/llama-3.1-sonar-large-128k-online', 1, 1],
];
export const SEED_MODELS = MODELS.map(([name]) => name);

/** Opens the benchmark database: DATABASE_URL, or the embedded cluster in .data/bench-pg. */
export async function openBenchDatabase(env = process.env) {
  if (env.DATABASE_URL) return { url: env.DATABASE_URL, describe: 'DATABASE_URL', stop: async () => undefined };
  const port = Number(env.BENCH_PG_PORT ?? 54339);
  const handle = await startEmbeddedPostgres({
    dataDir: BENCH_PG_DIR, port,
    // A bench cluster: generous memory for a ~10 GB database; no fsync wait per commit.
    settings: {
      shared_buffers: '2GB', effective_cache_size: '12GB', work_mem: '64MB', maintenance_work_mem: '1GB',
      max_wal_size: '4GB', checkpoint_timeout: '30min', synchronous_commit: 'off', max_connections: '200',
    },
  });
  return {
    url: handle.url, describe: `embedded Postgres in ${path.relative(ROOT, BENCH_PG_DIR)} (port ${port}${handle.owned ? '' : ', joined'})`,
    stop: () => handle.stop(),
  };
}

function options() {
  const { values } = parseArgs({
    options: { rows: { type: 'string' }, users: { type: 'string' }, days: { type: 'string' }, chunk: { type: 'string' } },
  });
  const parsed = {};
  for (const [name, fallback] of Object.entries(DEFAULTS)) {
    const value = values[name] === undefined ? fallback : Number(values[name]);
    if (!Number.isSafeInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer`);
    parsed[name] = value;
  }
  if (parsed.rows <= parsed.users) throw new Error('--rows must exceed --users (ids 1..users are the opening grants)');
  return parsed;
}

/** The seed's parameters, kept so a resumed seed continues the same series. */
async function seedInfo(client, wanted) {
  await client.query(`create table if not exists seed_ledger_info (
    singleton boolean primary key default true check (singleton), rows bigint not null, users integer not null,
    days integer not null, t0 timestamptz not null, done_through bigint not null default 0,
    dropped_indexes jsonb)`);
  const existing = (await client.query('select rows, users, days, t0, done_through from seed_ledger_info')).rows[0];
  if (existing !== undefined) {
    const same = Number(existing.rows) === wanted.rows && existing.users === wanted.users && existing.days === wanted.days;
    if (!same) throw new Error(`this database holds a seed of ${existing.rows} rows / ${existing.users} users / ${existing.days} days; use another DATABASE_URL or delete ${BENCH_PG_DIR}`);
    return { t0: existing.t0, doneThrough: Number(existing.done_through) };
  }
  const ledgerRows = Number((await client.query('select count(*) from ledger_entries')).rows[0].count);
  if (ledgerRows > 0) throw new Error(`the ledger already has ${ledgerRows} entries that this script did not write; seed an empty database`);
  const t0 = (await client.query(`select date_trunc('hour', now() - $1::integer * interval '1 day') as t0`, [wanted.days])).rows[0].t0;
  await client.query('insert into seed_ledger_info (rows, users, days, t0) values ($1, $2, $3, $4)', [wanted.rows, wanted.users, wanted.days, t0]);
  return { t0, doneThrough: 0 };
}

function userIdSql(expr, users) {
  return `'u' || lpad((${expr})::bigint::text, ${String(users).length}, '0')`;
}

/** Users 1..M with multipliers, and their opening grants as ledger ids 1..M. */
async function seedUsers(client, o, t0) {
  await client.query('begin');
  await client.query(
    `insert into users (id, created_at, multiplier_ppm)
     select ${userIdSql('j', o.users)}, $2::timestamptz,
            case j % 10 when 0 then 1500000 when 1 then 1200000 end
       from generate_series(1, $1::integer) j`, [o.users, t0]);
  await client.query(
    `insert into ledger_entries (id, user_id, kind, amount_nano, balance_after_nano, note, created_at) overriding system value
     select j, ${userIdSql('j', o.users)}, 'grant', 5000000000, 5000000000, 'opening grant', $2::timestamptz
       from generate_series(1, $1::integer) j`, [o.users, t0]);
  await client.query(`update users set balance_nano = 5000000000, credits_nano = 5000000000`);
  await client.query('update seed_ledger_info set done_through = $1', [o.users]);
  await client.query('commit');
}

const EVENTS_SQL = (o) => `
  with ev as (
    select i, random() as r_user, random() as r_kind, random() as r_model, random() as r_p, random() as r_c, random() as r_amt
      from generate_series($1::bigint, $2::bigint) i),
  shaped as (
    select i, ${userIdSql(`1 + floor(${o.users} * r_user * r_user)`, o.users)} as user_id,
           case when r_kind < 0.005 then 'grant' when r_kind < 0.0055 then 'adjustment' else 'usage' end as kind,
           1 + floor(${MODELS.length} * r_model * r_model)::integer as m,
           50 + floor(r_p * 2000)::integer as prompt_tokens, 10 + floor(r_c * 800)::integer as completion_tokens, r_amt,
           $3::timestamptz + (i - $4::bigint) * ($5::double precision * interval '1 second') as created_at
      from ev),
  priced as (
    select s.*, u.balance_nano as opening, coalesce(u.multiplier_ppm, p.default_multiplier_ppm) as ppm,
           ceil(1000 * (s.prompt_tokens * (array[${MODELS.map((m) => m[1]).join(',')}]::numeric[])[s.m]
                        + s.completion_tokens * (array[${MODELS.map((m) => m[2]).join(',')}]::numeric[])[s.m]))::bigint as upstream
      from shaped s join users u on u.id = s.user_id cross join pricing_settings p),
  amounts as (
    select *, case kind
                when 'usage' then -div(upstream::numeric * ppm + 999999, 1000000)::bigint
                when 'grant' then 10000000000 + floor(r_amt * 40000000000)::bigint
                else (case when r_amt < 0.5 then -1 else 1 end) * (1 + floor(r_amt * 1000000000)::bigint) end as amount
      from priced)
  insert into ledger_entries (id, user_id, kind, amount_nano, upstream_cost_nano, multiplier_ppm, balance_after_nano,
                              request_id, generation_id, model, prompt_tokens, completion_tokens, note, created_at)
  overriding system value
  select i, user_id, kind, amount,
         case when kind = 'usage' then upstream end, case when kind = 'usage' then ppm end,
         opening + sum(amount) over (partition by user_id order by i),
         case when kind = 'usage' then ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid end,
         case when kind = 'usage' then 'gen-seed-' || i end,
         case when kind = 'usage' then (array['${SEED_MODELS.join("','")}'])[m] end,
         case when kind = 'usage' then prompt_tokens end, case when kind = 'usage' then completion_tokens end,
         case kind when 'grant' then 'top-up' when 'adjustment' then 'support adjustment' end,
         created_at
    from amounts
   order by i`;

/** One chunk of ids in one transaction: ledger rows, running totals, rollups, requests. */
async function seedChunk(client, o, t0, lo, hi) {
  const stepS = (o.days * 86_400) / (o.rows - o.users);
  await client.query('begin');
  await client.query(EVENTS_SQL(o), [lo, hi, t0, o.users + 1, stepS]);
  await client.query(
    `update users u
        set balance_nano = u.balance_nano + d.total, credits_nano = u.credits_nano + d.credits, usage_nano = u.usage_nano + d.usage
       from (select user_id, sum(amount_nano) as total,
                    coalesce(sum(amount_nano) filter (where kind <> 'usage'), 0) as credits,
                    coalesce(-sum(amount_nano) filter (where kind = 'usage'), 0) as usage
               from ledger_entries where id between $1::bigint and $2::bigint group by user_id) d
      where u.id = d.user_id`, [lo, hi]);
  await client.query('select usage_rollups_add($1::bigint, $2::bigint)', [lo, hi]);
  await client.query(
    `insert into requests (id, user_id, replica_id, model, stream, state, generation_id, cost_nano, started_at, updated_at, settled_at)
     select request_id, user_id, 'seed', model, id % 3 = 0, 'settled', generation_id, upstream_cost_nano,
            created_at - interval '3 seconds', created_at, created_at
       from ledger_entries where id between $1::bigint and $2::bigint and kind = 'usage'`, [lo, hi]);
  await client.query('update seed_ledger_info set done_through = $1', [hi]);
  await client.query('commit');
}

/** Requests that never reached the ledger: failed ones (0.2%) and a few unsettled for support. */
async function seedOtherRequests(client, o, t0) {
  const failed = Math.max(10, Math.floor(o.rows / 500));
  await client.query(
    `insert into requests (id, user_id, replica_id, model, stream, state, reason, lookup_attempts, started_at, updated_at)
     select ('00000000-0000-4000-9000-' || lpad(to_hex(k), 12, '0'))::uuid,
            ${userIdSql(`1 + floor(${o.users} * random() * random())`, o.users)}, 'seed',
            (array['${SEED_MODELS.join("','")}'])[1 + floor(${MODELS.length} * random())::integer], random() < 0.5,
            case when k <= $1 then 'failed' when k <= $1 + 40 then 'awaiting_cost' else 'unresolved' end,
            case when k <= $1 then 'upstream 503 before any output' when k <= $1 + 40 then 'stream ended without usage'
                 else 'died before a generation id was known' end,
            case when k <= $1 then 0 else 3 end, $2::timestamptz + random() * (now() - $2::timestamptz), now()
       from generate_series(1, $1 + 70) k`,
    [failed, t0]);
}

/**
 * Secondary indexes are maintained row by row on insert, which costs ~20x the insert itself
 * here; a bulk build after the load is far cheaper. So a fresh seed drops the indexes that no
 * constraint needs (primary keys and uniques stay: the rollup upserts and request_id rely on
 * them), remembering their definitions in seed_ledger_info, and recreates them at the end
 * (also after a resumed seed). Only ever done on a database this script is seeding.
 */
const BULK_TABLES = ['ledger_entries', 'requests', 'usage_hourly'];

async function dropSecondaryIndexes(client) {
  const { rows } = await client.query(
    `select i.indexrelid::regclass::text as name, pg_get_indexdef(i.indexrelid) as def
       from pg_index i join pg_class t on t.oid = i.indrelid
      where t.relname = any($1::text[]) and t.relnamespace = 'public'::regnamespace
        and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid)`, [BULK_TABLES]);
  await client.query('begin');
  await client.query('update seed_ledger_info set dropped_indexes = $1::jsonb', [JSON.stringify(rows)]);
  for (const { name } of rows) await client.query(`drop index ${name}`);
  await client.query('commit');
}

async function recreateIndexes(client, log) {
  const saved = (await client.query('select dropped_indexes from seed_ledger_info')).rows[0]?.dropped_indexes ?? null;
  if (saved === null) return;
  await client.query(`set maintenance_work_mem = '1GB'`);
  for (const { name, def } of saved) {
    const started = Date.now();
    await client.query(def);
    log(`  index ${name} rebuilt (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  }
  await client.query('update seed_ledger_info set dropped_indexes = null');
}

async function finish(client, o, log) {
  await recreateIndexes(client, log);
  await client.query(`select setval(pg_get_serial_sequence('ledger_entries', 'id'), $1::bigint)`, [o.rows]);
  for (const table of ['users', 'ledger_entries', 'requests', 'usage_hourly', 'usage_user_daily', 'usage_user_weekly', 'usage_user_monthly',
    'usage_user_totals', 'usage_model_hourly', 'usage_model_daily']) {
    await client.query(`vacuum (analyze) ${table}`); // visibility map for index-only scans, and planner statistics
  }
  await client.query('checkpoint'); // lets Postgres drop the load's WAL beyond max_wal_size
  const breaches = await client.query(
    `select count(*)::integer as n from users u
       left join (select user_id, sum(amount_nano) as total from ledger_entries group by user_id) l on l.user_id = u.id
      where u.balance_nano <> coalesce(l.total, 0)`);
  return breaches.rows[0].n;
}

async function skipForeignKeyTriggers(client, log) {
  try {
    await client.query('set session_replication_role = replica');
  } catch (error) {
    if (error.code !== '42501') throw error; // insufficient_privilege
    log('(not a superuser: foreign-key triggers stay on, the seed is ~3x slower)');
  }
}

async function orphans(client) {
  const { rows } = await client.query(
    `select (select count(*) from ledger_entries l where not exists (select 1 from users u where u.id = l.user_id))
          + (select count(*) from requests r where not exists (select 1 from users u where u.id = r.user_id)) as n`);
  return Number(rows[0].n);
}

export async function seedLedger(url, o, log = console.log) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`set work_mem = '256MB'`);
    await client.query('set synchronous_commit = off');
    await skipForeignKeyTriggers(client, log);
    await migrate(client, await loadMigrations(path.join(ROOT, 'migrations')));
    const { t0, doneThrough } = await seedInfo(client, o);
    if (doneThrough >= o.rows) {
      await recreateIndexes(client, log);
      log(`already seeded: ${o.rows} ledger rows over ${o.users} users`);
      return;
    }
    const started = Date.now();
    if (doneThrough === 0) {
      await dropSecondaryIndexes(client);
      await seedUsers(client, o, t0);
    }
    let lo = Math.max(doneThrough, o.users) + 1;
    while (lo <= o.rows) {
      const hi = Math.min(o.rows, lo + o.chunk - 1);
      await seedChunk(client, o, t0, lo, hi);
      const s = (Date.now() - started) / 1000;
      log(`  ${hi.toLocaleString('en')} / ${o.rows.toLocaleString('en')} ledger rows  (${s.toFixed(0)} s, ${Math.round((hi - doneThrough) / s).toLocaleString('en')} rows/s)`);
      lo = hi + 1;
    }
    await seedOtherRequests(client, o, t0);
    log('rebuilding indexes, vacuum analyze ...');
    const breaches = await finish(client, o, log);
    if (breaches !== 0) throw new Error(`${breaches} users break balance = Σ ledger after seeding`);
    const missing = await orphans(client);
    if (missing !== 0) throw new Error(`${missing} ledger or request rows name a user that does not exist`);
    log(`seeded ${o.rows.toLocaleString('en')} ledger rows over ${o.users.toLocaleString('en')} users in ${((Date.now() - started) / 1000).toFixed(0)} s; balance = Σ ledger holds for every user, every row has its user`);
  } finally {
    await client.end();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const o = options();
  const db = await openBenchDatabase();
  console.log(`seeding ${db.describe}: ${o.rows.toLocaleString('en')} rows, ${o.users.toLocaleString('en')} users, ${o.days} days`);
  if (!process.env.DATABASE_URL && !existsSync(BENCH_PG_DIR)) console.log(`(created ${BENCH_PG_DIR})`);
  try {
    await seedLedger(db.url, o);
  } finally {
    await db.stop();
  }
}
