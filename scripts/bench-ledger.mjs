#!/usr/bin/env node
// `npm run bench:ledger`: latency of the admin query API on a large ledger.
//
//   node scripts/bench-ledger.mjs [--runs 25] [--rows 10000000] [--users 100000] [--days 365]
//
// Uses the database of scripts/seed-ledger.mjs (DATABASE_URL, or the embedded cluster in
// .data/bench-pg), seeding it first if needed, starts a real Metergate replica in this process
// (startRuntime: express, pools, migrations — the same code as `npm start`), and calls each
// endpoint over HTTP on 127.0.0.1 with varied parameters, one request at a time (latency, not
// throughput). Every variant is run once to warm up, then --runs times with fresh random
// parameters. Prints p50 / p95 / max per endpoint and per variant, and the command to reproduce.
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { createLogger, loadConfig, startRuntime } from '@metergate/server';
import { openBenchDatabase, SEED_MODELS, seedLedger } from './seed-ledger.mjs';

const TARGET_P95_MS = 100;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const { values: args } = parseArgs({
  options: { runs: { type: 'string' }, rows: { type: 'string' }, users: { type: 'string' }, days: { type: 'string' } },
});
const seedOptions = { rows: Number(args.rows ?? 10_000_000), users: Number(args.users ?? 100_000), days: Number(args.days ?? 365), chunk: 250_000 };
const runs = Number(args.runs ?? 25);

let seed = 42;
const random = () => {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = Math.imul(seed ^ (seed >>> 15), seed | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (items) => items[Math.floor(random() * items.length)];
const iso = (ms) => new Date(ms).toISOString();

/** Facts about the seeded data the parameters are drawn from. */
async function dataFacts(url) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const one = async (sql) => (await client.query(sql)).rows[0];
    const range = await one(`select extract(epoch from min(created_at)) * 1000 as lo, extract(epoch from max(created_at)) * 1000 as hi,
                                    max(id)::text as max_id, (select reltuples::bigint from pg_class where relname = 'ledger_entries') as rows_estimate
                               from ledger_entries`);
    const users = (await client.query(`select id from users order by id`)).rows.map((r) => r.id);
    const heavy = (await client.query(`select id from users order by usage_nano desc limit 20`)).rows.map((r) => r.id);
    const balances = (await client.query(`select percentile_disc(array[0.001, 0.01, 0.05]) within group (order by balance_nano) as p from users`)).rows[0].p;
    const exact = await one('select (select count(*) from ledger_entries)::text as ledger, (select count(*) from users)::text as users');
    return { lo: Number(range.lo), hi: Number(range.hi), maxId: Number(range.max_id), users, heavy, balances: balances.map(Number), exact };
  } finally {
    await client.end();
  }
}

/** Each endpoint's variants: a label and a function drawing a fresh path. */
function variants(f) {
  const user = () => pick(f.users);
  const model = () => encodeURIComponent(pick(SEED_MODELS));
  const at = () => f.lo + random() * (f.hi - f.lo);
  const usd = (nano) => (nano / 1e9).toFixed(9);
  const monthStart = (ms) => { const d = new Date(ms); return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1); };
  return {
    'GET /admin/ledger': [
      ['newest page, no filter', () => '/admin/ledger?limit=100'],
      ['user_id', () => `/admin/ledger?user_id=${user()}`],
      ['heavy user_id + kind=usage', () => `/admin/ledger?user_id=${pick(f.heavy)}&kind=usage`],
      ['model', () => `/admin/ledger?model=${model()}`],
      ['kind=grant', () => `/admin/ledger?kind=grant`],
      ['kind=adjustment, until random', () => `/admin/ledger?kind=adjustment&until=${iso(at())}`],
      ['1-day window', () => { const t = at(); return `/admin/ledger?since=${iso(t)}&until=${iso(t + DAY)}`; }],
      ['until deep in history', () => `/admin/ledger?until=${iso(at())}`],
      ['model + 1-day window', () => { const t = at(); return `/admin/ledger?model=${model()}&since=${iso(t)}&until=${iso(t + DAY)}`; }],
      ['cursor deep page', () => `/admin/ledger?cursor=${1 + Math.floor(random() * f.maxId)}`],
    ],
    'GET /admin/usage': [
      ['user, all time', () => '/admin/usage?group_by=user'],
      ['user, last 24 h', () => `/admin/usage?group_by=user&since=${iso(f.hi - DAY)}`],
      ['user, this month', () => `/admin/usage?group_by=user&since=${iso(monthStart(f.hi))}`],
      ['user, a past calendar month', () => { const m = monthStart(at()); return `/admin/usage?group_by=user&since=${iso(m)}&until=${iso(monthStart(m + 32 * DAY))}`; }],
      ['user, today (since UTC midnight)', () => `/admin/usage?group_by=user&since=${iso(Math.floor(f.hi / DAY) * DAY)}`],
      ['user, a past whole day', () => { const d = Math.floor(at() / DAY) * DAY; return `/admin/usage?group_by=user&since=${iso(d)}&until=${iso(d + DAY)}`; }],
      ['user, 3 whole days', () => { const d = Math.floor(at() / DAY) * DAY; return `/admin/usage?group_by=user&since=${iso(d - 3 * DAY)}&until=${iso(d)}`; }],
      ['user, 7 days (cutting days)', () => { const t = at(); return `/admin/usage?group_by=user&since=${iso(t - 7 * DAY)}&until=${iso(t)}`; }],
      ['user, 30 days (cutting days)', () => { const t = at(); return `/admin/usage?group_by=user&since=${iso(t - 30 * DAY)}&until=${iso(t)}`; }],
      ['user, 180 days (cutting days)', () => { const t = at(); return `/admin/usage?group_by=user&since=${iso(t - 180 * DAY)}&until=${iso(t)}`; }],
      ['user + model, 7 days', () => { const t = at(); return `/admin/usage?group_by=user&model=${model()}&since=${iso(t - 7 * DAY)}&until=${iso(t)}`; }],
      ['model, all time', () => '/admin/usage?group_by=model'],
      ['model, 30 days', () => { const t = at(); return `/admin/usage?group_by=model&since=${iso(t - 30 * DAY)}&until=${iso(t)}`; }],
      ['day, all time', () => '/admin/usage?group_by=day&limit=1000'],
      ['day, 30 days, one model', () => { const t = at(); return `/admin/usage?group_by=day&model=${model()}&since=${iso(t - 30 * DAY)}&until=${iso(t)}`; }],
      ['hour, 48 h', () => { const t = at(); return `/admin/usage?group_by=hour&since=${iso(t - 2 * DAY)}&until=${iso(t)}&limit=1000`; }],
      ['one user by model, all time', () => `/admin/usage?group_by=model&user_id=${user()}`],
      ['heavy user by day, 90 days', () => `/admin/usage?group_by=day&user_id=${pick(f.heavy)}&since=${iso(f.hi - 90 * DAY)}`],
    ],
    'GET /admin/users': [
      ['lowest balances', () => '/admin/users?sort=balance&order=asc'],
      ['top spenders', () => '/admin/users?sort=spend&order=desc'],
      ['by id from a random user', () => `/admin/users?sort=id&cursor=${Buffer.from(JSON.stringify(['id', null, user()])).toString('base64url')}`],
      ['balance below the 1st percentile', () => `/admin/users?sort=balance&order=asc&balance_below_usd=${usd(f.balances[1])}`],
      ['spend order, balance below 5th pct', () => `/admin/users?sort=spend&order=desc&balance_below_usd=${usd(f.balances[2])}`],
    ],
    'GET /admin/requests': [
      ['unsettled', () => '/admin/requests?state=unsettled'],
      ['failed', () => '/admin/requests?state=failed'],
      ['settled, newest', () => '/admin/requests?state=settled'],
      ['no filter', () => '/admin/requests'],
      ['user_id', () => `/admin/requests?user_id=${user()}`],
      ['heavy user_id + settled', () => `/admin/requests?user_id=${pick(f.heavy)}&state=settled`],
      ['failed for a heavy user', () => `/admin/requests?state=failed&user_id=${pick(f.heavy)}`],
    ],
  };
}

async function timed(url, token, path) {
  const started = performance.now();
  const response = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(60_000) });
  const body = await response.text();
  const ms = performance.now() - started;
  if (response.status !== 200) throw new Error(`GET ${path}: ${response.status} ${body.slice(0, 300)}`);
  return ms;
}

function stats(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
  return { n: sorted.length, p50: at(0.5), p95: at(0.95), max: sorted.at(-1) };
}

const fmt = (ms) => ms.toFixed(1).padStart(7);

async function exportRate(url, token, f) {
  const t = f.hi - DAY;
  const started = performance.now();
  const response = await fetch(`${url}/admin/ledger?format=csv&since=${iso(t)}`, { headers: { authorization: `Bearer ${token}` } });
  const text = await response.text();
  const seconds = (performance.now() - started) / 1000;
  const rows = text.split('\r\n').length - 2;
  return { rows, seconds, mb: Buffer.byteLength(text) / 1e6 };
}

const db = await openBenchDatabase();
const token = `bench-${randomBytes(12).toString('hex')}`;
let runtime;
try {
  await seedLedger(db.url, seedOptions);
  const facts = await dataFacts(db.url);
  const config = loadConfig({
    NODE_ENV: 'test', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', DATABASE_URL: db.url, ADMIN_TOKEN: token,
    OPENROUTER_API_KEY: 'bench-unused', OPENROUTER_BASE_URL: 'http://127.0.0.1:9/api/v1', RECONCILE_INTERVAL_MS: '3600000',
  });
  runtime = await startRuntime({ config, log: createLogger('silent', config.replicaId), databaseUrl: db.url, openRouterApiKey: 'bench-unused', adminToken: token });
  console.log(`Metergate admin query API benchmark — ${Number(facts.exact.ledger).toLocaleString('en')} ledger rows, ${Number(facts.exact.users).toLocaleString('en')} users over ${seedOptions.days} days`);
  console.log(`database: ${db.describe}; server: in-process replica at ${runtime.url}; ${os.cpus().length} CPUs, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM`);
  console.log(`each variant: 1 warm-up + ${runs} timed requests, sequential, fresh random parameters\n`);
  const all = variants(facts);
  for (const list of Object.values(all)) for (const [, path] of list) await timed(runtime.url, token, path());
  const summary = [];
  for (const [endpoint, list] of Object.entries(all)) {
    const samples = [];
    const rows = [];
    for (const [label, path] of list) {
      const mine = [];
      for (let i = 0; i < runs; i += 1) mine.push(await timed(runtime.url, token, path()));
      samples.push(...mine);
      rows.push([label, stats(mine)]);
    }
    const s = stats(samples);
    summary.push([endpoint, s]);
    console.log(`${endpoint}`);
    for (const [label, v] of rows) console.log(`    ${label.padEnd(36)} p50 ${fmt(v.p50)} ms   p95 ${fmt(v.p95)} ms   max ${fmt(v.max)} ms`);
  }
  console.log(`\n${'endpoint'.padEnd(22)} ${'requests'.padStart(8)}  ${'p50 ms'.padStart(7)}  ${'p95 ms'.padStart(7)}  ${'max ms'.padStart(7)}`);
  for (const [endpoint, s] of summary) {
    console.log(`${endpoint.padEnd(22)} ${String(s.n).padStart(8)}  ${fmt(s.p50)}  ${fmt(s.p95)}  ${fmt(s.max)}  ${s.p95 < TARGET_P95_MS ? 'ok' : `OVER the ${TARGET_P95_MS} ms target`}`);
  }
  const csv = await exportRate(runtime.url, token, facts);
  console.log(`\nCSV export of the last 24 h: ${csv.rows.toLocaleString('en')} rows, ${csv.mb.toFixed(1)} MB in ${csv.seconds.toFixed(2)} s (${Math.round(csv.rows / csv.seconds).toLocaleString('en')} rows/s)`);
  const seedFlags = ['rows', 'users', 'days'].filter((name) => args[name] !== undefined).map((name) => `--${name} ${args[name]}`).join(' ');
  const benchFlags = [seedFlags, args.runs === undefined ? '' : `--runs ${args.runs}`].filter(Boolean).join(' ');
  console.log(`\nreproduce: npm run seed:ledger${seedFlags ? ` -- ${seedFlags}` : ''} && npm run bench:ledger${benchFlags ? ` -- ${benchFlags}` : ''}`);
} finally {
  await runtime?.close(5_000);
  await db.stop();
}
