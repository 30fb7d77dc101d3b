#!/usr/bin/env node
// `npm run bench`: what metering costs, measured on this machine against a durable Postgres.
// Separate processes: an embedded Postgres (fsync and synchronous_commit on unless
// --fast-unsafe), the OpenRouter simulator, a bare Node pass-through proxy (the floor any Node
// proxy pays), one Metergate replica per --barrier mode, and the load generator. The same
// load goes straight to the simulator, through the bare proxy and through Metergate; the
// ratios against the bare proxy are judged against the targets in lib/bench-report.mjs.
// `--profile` adds the per-call breakdown from pg_stat_statements and /proc.
import { execFileSync, spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { request } from 'undici';
import { postgresCpuMs, processCpuMs, readCounters, statementDeltas } from './lib/bench-probe.mjs';
import { startBareProxy, startLoadGenerator, startMetergate, startSimulator } from './lib/bench-processes.mjs';
import { cpuTable, detailTable, profileBlock, ratioTable, summaryTable } from './lib/bench-report.mjs';
import { addSlice, emptyRun, summarize } from './lib/bench-samples.mjs';
import { ROOT, startThrowawayPostgres } from './lib/throwaway-pg.mjs';

const USAGE = 'usage: npm run bench -- [--barrier serialize|reserve|both] [--profile] [--fast-unsafe] [--users N] ' +
  '[--concurrency N] [--load-requests N] [--load-seconds S] [--c1-requests N] [--c1-seconds S] [--rounds N] [--warmup-seconds S] [--tokens N] [--replica-env NAME=VALUE]';
const { values: opts } = parseArgs({
  options: {
    barrier: { type: 'string', default: 'serialize' },
    profile: { type: 'boolean', default: false },
    'fast-unsafe': { type: 'boolean', default: false },
    users: { type: 'string', default: '200' },
    concurrency: { type: 'string', default: '50' },
    'load-requests': { type: 'string', default: '20000' },
    'load-seconds': { type: 'string', default: '8' },
    'c1-requests': { type: 'string', default: '1000' },
    'c1-seconds': { type: 'string', default: '10' },
    'warmup-seconds': { type: 'string', default: '2' },
    rounds: { type: 'string' },
    tokens: { type: 'string', default: '16' },
    'replica-env': { type: 'string', multiple: true, default: [] },
  },
});
function positive(name) {
  const value = Number(opts[name]);
  if (!(value > 0) || !Number.isFinite(value)) { console.error(`--${name} must be a positive number\n${USAGE}`); process.exit(2); }
  return value;
}
if (!['serialize', 'reserve', 'both'].includes(opts.barrier)) { console.error(`--barrier must be serialize, reserve or both\n${USAGE}`); process.exit(2); }
const BARRIERS = opts.barrier === 'both' ? ['serialize', 'reserve'] : [opts.barrier];
/** --replica-env NAME=VALUE (repeatable): extra settings for the replica, printed with the results. */
const REPLICA_ENV = Object.fromEntries(opts['replica-env'].map((pair) => {
  const at = pair.indexOf('=');
  if (at <= 0) { console.error(`--replica-env takes NAME=VALUE; got ${JSON.stringify(pair)}\n${USAGE}`); process.exit(2); }
  return [pair.slice(0, at), pair.slice(at + 1)];
}));
const USERS = Math.floor(positive('users'));
const CONCURRENCY = Math.floor(positive('concurrency'));
const LEVELS = {
  c1: { concurrency: 1, requestsMax: Math.floor(positive('c1-requests')), durationMs: positive('c1-seconds') * 1000 },
  load: { concurrency: CONCURRENCY, requestsMax: Math.floor(positive('load-requests')), durationMs: positive('load-seconds') * 1000 },
};
const SHAPE = { concurrency: CONCURRENCY, users: USERS };
const PROFILE = opts.profile;
// --profile waits for Postgres's statistics around every slice: one round unless asked.
const ROUNDS = opts.rounds === undefined ? (PROFILE ? 1 : 4) : Math.floor(positive('rounds'));
const WARMUP_MS = positive('warmup-seconds') * 1000;
const TOKENS = Math.floor(positive('tokens'));
const FAST_UNSAFE = opts['fast-unsafe'];
const ADMIN = 'bench-admin-token-0123456789';
const SIM_KEY = 'bench-sim-key';
// Backends flush their statistics (pg_stat_database) at most once a second and, when idle,
// only after PGSTAT_IDLE_INTERVAL (10 s): --profile waits that out before reading commits.
const STATS_FLUSH_WAIT_MS = 11_000;
const STOP_DEADLINE_MS = 30_000;
const GENERATOR_BUSY_SHARE = 0.85;

// ---- process bookkeeping: everything started is stopped, also on failure and Ctrl-C -------
const started = [];
let cleaning = null;
function cleanup() {
  cleaning ??= (async () => {
    for (const proc of started.reverse()) {
      try {
        // Every stop() is bounded itself; this bound is for one that is not.
        await Promise.race([proc.stop(), sleep(STOP_DEADLINE_MS).then(() => { throw new Error(`no exit after ${STOP_DEADLINE_MS} ms`); })]);
      } catch (error) {
        console.error(`stopping ${proc.name}: ${error.message}`);
      }
    }
  })();
  return cleaning;
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping every benchmark process`);
    void cleanup().finally(() => process.exit(130));
  });
}
const track = (proc) => { started.push(proc); return proc; };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (message) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);

async function readSettings(client) {
  const names = ['server_version', 'fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'wal_level',
    'shared_buffers', 'max_connections', 'shared_preload_libraries', 'track_wal_io_timing'];
  const settings = {};
  for (const name of names) settings[name] = (await client.query(`SHOW ${name}`)).rows[0][name];
  return settings;
}

async function createUsers(proxyUrl) {
  const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
  const users = [];
  for (let i = 0; i < USERS; i += 1) {
    const id = `bench-${i}`;
    const created = await request(`${proxyUrl}/admin/users`, { method: 'POST', headers: admin, body: JSON.stringify({ id }) });
    if (created.statusCode !== 201) throw new Error(`creating ${id}: ${created.statusCode} ${await created.body.text()}`);
    const { api_key: key } = await created.body.json();
    const grant = await request(`${proxyUrl}/admin/users/${id}/credits`, { method: 'POST', headers: admin, body: JSON.stringify({ amount_usd: '1000' }) });
    if (grant.statusCode !== 201) throw new Error(`granting ${id}: ${grant.statusCode} ${await grant.body.text()}`);
    await grant.body.dump();
    users.push({ id, key });
  }
  return users;
}

function body(stream, user) {
  return JSON.stringify({ model: 'openai/gpt-4o-mini', stream, user, messages: [{ role: 'user', content: 'Benchmark prompt, about this long.' }], sim: { completion_tokens: TOKENS } });
}

/** The paths under test: where to send, and with which credentials. */
function paths(sim, bare, replicas, users) {
  const calls = (auth) => (stream) => users.map((u) => ({ authorization: auth(u), body: body(stream, u.id) }));
  return [
    { key: 'direct', label: 'straight to the simulator', url: `${sim.url}/chat/completions`, calls: calls(() => `Bearer ${SIM_KEY}`), proc: sim },
    { key: 'bare', label: 'bare Node proxy (node:http + undici)', url: `${bare.url}/v1/chat/completions`, calls: calls((u) => `Bearer ${u.key}`), proc: bare },
    ...replicas.map((r) => ({ key: `metergate-${r.barrier}`, label: `Metergate (BARRIER=${r.barrier})`, url: `${r.url}/v1/chat/completions`,
      calls: calls((u) => `Bearer ${u.key}`), proc: r, metered: true })),
  ];
}

/** CPU ms so far of every process under test, by name. */
function cpuSnapshot(procs, clusterDir) {
  const snapshot = { Postgres: postgresCpuMs(clusterDir) };
  for (const p of procs) snapshot[p.name] = processCpuMs(p.pid);
  return snapshot;
}

/** One slice of one scenario, added to its run: latencies, CPU, and (--profile) Postgres counters. */
async function measureSlice(ctx, target, kind, level, run) {
  const stream = kind === 'stream';
  const profiled = PROFILE && target.metered === true;
  if (profiled && ctx.statsDirty) await sleep(STATS_FLUSH_WAIT_MS);
  const before = profiled ? await readCounters(ctx.client, true) : null;
  const cpuBefore = cpuSnapshot(ctx.procs, ctx.clusterDir);
  const { concurrency, requestsMax, durationMs } = LEVELS[level];
  const slice = await ctx.load.run({ url: target.url, stream, calls: target.calls(stream), concurrency,
    requestsMax: Math.ceil(requestsMax / ROUNDS), durationMs: durationMs / ROUNDS });
  const cpuAfter = cpuSnapshot(ctx.procs, ctx.clusterDir);
  const cpuMsByProcess = Object.fromEntries(Object.keys(cpuAfter).map((n) => [n, cpuAfter[n] - cpuBefore[n]]));
  cpuMsByProcess['load generator'] = slice.cpuMs;
  if (target.metered) ctx.statsDirty = true;
  let counters = null;
  if (profiled) {
    const statementsAfter = await readCounters(ctx.client, true);
    await sleep(STATS_FLUSH_WAIT_MS);
    const after = await readCounters(ctx.client, false);
    counters = { statements: statementDeltas(before, statementsAfter), commits: after.commits - before.commits,
      xids: after.nextXid - before.nextXid, walSyncs: after.walSyncs - before.walSyncs, walSyncMs: after.walSyncMs - before.walSyncMs };
    ctx.statsDirty = false;
  }
  addSlice(run, slice, cpuMsByProcess, counters);
}

async function runAll(ctx, targets) {
  for (const target of targets) {
    log(`warming up ${target.label}`);
    for (const stream of [false, true]) {
      await ctx.load.run({ url: target.url, stream, calls: target.calls(stream), concurrency: CONCURRENCY, requestsMax: 100_000, durationMs: WARMUP_MS / 2 });
    }
  }
  const raw = new Map();
  for (const level of ['c1', 'load']) {
    for (const kind of ['json', 'stream']) {
      for (const target of targets) {
        const run = emptyRun(`${target.label}, ${kind}, ${level === 'c1' ? 'c=1' : `c=${CONCURRENCY}`}`);
        run.replicaName = target.proc.name;
        raw.set(`${target.key}|${kind}|${level}`, run);
      }
    }
  }
  // Each scenario runs in ROUNDS slices and the paths take turns slice by slice, so a change
  // in the machine's load (other tenants on the two cores) hits every path alike rather than
  // one path's whole series.
  for (let round = 1; round <= ROUNDS; round += 1) {
    for (const level of ['c1', 'load']) {
      for (const kind of ['json', 'stream']) {
        log(`round ${round}/${ROUNDS}: ${kind}, ${level === 'c1' ? 'c=1' : `c=${CONCURRENCY}`}`);
        for (const target of targets) await measureSlice(ctx, target, kind, level, raw.get(`${target.key}|${kind}|${level}`));
      }
    }
  }
  const results = new Map([...raw].map(([key, run]) => [key, summarize(run)]));
  for (const run of results.values()) run.replicaCpuMs = run.cpuMsByProcess[run.replicaName];
  return { results, runs: [...results.values()] };
}

/** The project's own verify, against the benchmark database, with the replicas stopped. */
function verifyBooks(databaseUrl) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'packages/server/dist/src/verify.js'), '--rollups'],
      { env: { PATH: process.env.PATH ?? '', DATABASE_URL: databaseUrl }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    child.once('exit', (code) => resolve({ code, output: output.trimEnd() }));
  });
}

function fsType(dir) {
  try {
    return execFileSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

function loadAverage() {
  return os.loadavg().map((l) => l.toFixed(1)).join(' ');
}

function commandLine() {
  const args = process.argv.slice(2).join(' ');
  const event = process.env.npm_lifecycle_event;
  if (event === 'bench:profile') return `npm run bench:profile${args.replace(/^--profile\s*/, '') ? ` -- ${args.replace(/^--profile\s*/, '')}` : ''}`;
  if (event === 'bench') return `npm run bench${args ? ` -- ${args}` : ''}`;
  return `node scripts/bench.mjs ${args}`.trim();
}

function printReport(meta, replicas, targets, { results, runs }, verified) {
  const out = [];
  if (FAST_UNSAFE) out.push('', '!!!!!!!! --fast-unsafe: Postgres runs with fsync and synchronous_commit OFF. A crash would lose', '!!!!!!!! committed money. These figures are NOT the durable benchmark; never quote them as such.');
  out.push('', `Metergate benchmark — ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), node ${process.version}, ` +
    `load average at start ${meta.loadAverage}, at end ${loadAverage()}; Postgres, simulator, bare proxy, Metergate and the load generator share this machine.`);
  out.push(`Command: ${commandLine()}`);
  out.push(`Postgres (read back with SHOW): ${Object.entries(meta.settings).map(([k, v]) => `${k}=${v || "''"}`).join(', ')}; ` +
    `data directory on ${meta.fsType}. ${FAST_UNSAFE ? 'FAST-UNSAFE (fsync off).' : 'Durable: every commit waits for its WAL flush.'}`);
  out.push(`Load: ${USERS} users round robin, ${TOKENS} completion tokens per call; c=1: up to ${LEVELS.c1.requestsMax} requests or ${LEVELS.c1.durationMs / 1000} s; ` +
    `c=${CONCURRENCY}: up to ${LEVELS.load.requestsMax} requests or ${LEVELS.load.durationMs / 1000} s; each in ${ROUNDS} slice(s), the paths taking turns; ` +
    'every path warmed up first. Latency is to the last byte; req/s counts the calls completed inside each slice\'s window.');
  if (Object.keys(REPLICA_ENV).length > 0) out.push(`Replica settings (--replica-env): ${JSON.stringify(REPLICA_ENV)}`);
  out.push(`Barrier: ${replicas.map((r) => `BARRIER=${r.barrier} passed, the replica reports ${r.reported ?? 'no mode (not confirmed: a replica that predates the BARRIER setting ignores it and serializes)'}`).join('; ')}`);
  for (const r of replicas) {
    if (r.reported !== null && !r.reported.startsWith(r.barrier)) out.push(`!!! BARRIER=${r.barrier} was passed but the replica reports ${r.reported}: its rows are not what they say.`);
  }
  out.push('', 'Non-streaming (JSON):', '', summaryTable('json', targets, results, SHAPE));
  out.push('', 'Streaming (SSE):', '', summaryTable('stream', targets, results, SHAPE));
  for (const r of targets.filter((t) => t.metered)) out.push('', ratioTable(r, results, SHAPE));
  out.push('', 'Every run:', '', detailTable(runs));
  // One Node process drives the load: near a full core, it (not the path) may set the pace.
  for (const r of runs.filter((run) => run.cpuMs / (run.seconds * 1000) > GENERATOR_BUSY_SHARE)) {
    out.push(`!!! the load generator used over ${GENERATOR_BUSY_SHARE * 100} % of a core in "${r.name}": that run's figures may be the generator's limit.`);
  }
  if (PROFILE) {
    out.push('', 'CPU per call (from /proc/<pid>/stat utime+stime; Postgres = postmaster, its backends and reaped children):', '',
      cpuTable(runs, Object.keys(runs[0].cpuMsByProcess)));
    out.push('', 'Per-call breakdown of each Metergate run (pg_stat_statements; counts include the replica\'s background',
      'heartbeat and reconciler). xact_commit comes from per-backend statistics Postgres flushes lazily (at most once a',
      'second; an idle backend after 10 s): the benchmark waits 11 s after each run, yet the figure can be off by a few',
      'tenths; the xid count is exact.');
    for (const run of runs.filter((r) => r.statements !== undefined)) out.push('', profileBlock(run));
  }
  out.push('', verified.code === 0
    ? 'Books verified clean: `npm run verify -- --rollups` against the benchmark database exited 0:'
    : `!!! verify FAILED (exit ${verified.code}) on the benchmark database:`);
  out.push(verified.output.split('\n').map((l) => `    ${l}`).join('\n'));
  console.log(out.join('\n'));
}

async function main() {
  const meta = { loadAverage: loadAverage() };
  if (process.env.DATABASE_URL) log('DATABASE_URL is ignored: the benchmark always runs its own embedded Postgres');
  const settings = PROFILE ? { shared_preload_libraries: 'pg_stat_statements', 'pg_stat_statements.track_utility': 'on', track_wal_io_timing: 'on' } : {};
  log(`starting ${FAST_UNSAFE ? 'FAST-UNSAFE (fsync off)' : 'durable'} Postgres`);
  const db = track({ name: 'Postgres', ...await startThrowawayPostgres('bench', {}, { durable: !FAST_UNSAFE, settings }) });
  const client = new pg.Client({ connectionString: db.url });
  // Ctrl-C reaches Postgres too (same process group), which then ends this session: the
  // next query fails with that error, instead of an unhandled event skipping the clean-up.
  client.on('error', (error) => log(`statistics connection: ${error.message}`));
  await client.connect();
  track({ name: 'stats client', stop: () => client.end() });
  meta.settings = await readSettings(client);
  // Asked of Postgres itself: as root the cluster lives outside the checkout (embedded-layout.ts).
  const clusterDir = (await client.query('SHOW data_directory')).rows[0].data_directory;
  meta.fsType = fsType(clusterDir);
  if (PROFILE) await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const sim = track(await startSimulator(SIM_KEY));
  const bare = track(await startBareProxy(sim.url, SIM_KEY));
  const load = track({ name: 'load generator', ...startLoadGenerator() });
  const replicas = [];
  for (const barrier of BARRIERS) {
    log(`starting Metergate with BARRIER=${barrier}`);
    const replica = track(await startMetergate({ databaseUrl: db.url, upstreamUrl: sim.url, upstreamKey: SIM_KEY, adminToken: ADMIN, barrier, extraEnv: REPLICA_ENV }));
    replicas.push({ ...replica, barrier });
  }
  log(`creating ${USERS} users`);
  const users = await createUsers(replicas[0].url);
  const targets = paths(sim, bare, replicas, users);
  const ctx = { client, load, clusterDir, procs: [sim, bare, ...replicas], statsDirty: true };
  const measured = await runAll(ctx, targets);
  for (const r of replicas) r.reported = await r.reportedBarrier();
  log('stopping the replicas, then verifying the books');
  for (const r of replicas) await r.stop();
  const verified = await verifyBooks(db.url);
  printReport(meta, replicas, targets, measured, verified);
  const failures = measured.runs.reduce((a, r) => a + r.failures, 0);
  if (failures > 0) console.log(`\n!!! ${failures} calls failed (see "Every run"): the figures above leave them out.`);
  return verified.code === 0 && failures === 0 ? 0 : 1;
}

let exitCode = 1;
try {
  exitCode = await main();
} catch (error) {
  console.error(`benchmark failed: ${error.stack ?? error}`);
} finally {
  await cleanup();
}
process.exit(exitCode);
