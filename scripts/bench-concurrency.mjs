#!/usr/bin/env node
// `npm run bench:concurrency`: what the cost barrier's mode does to concurrency, measured on this
// machine, for each BARRIER mode in one run (passed to the replica process; a build whose config
// does not know BARRIER runs serialize whatever it is given, and the output says so):
//   (a) one user × K parallel ~3 s streams: wall time through Metergate vs the simulator direct;
//   (b) U users at once, one ~3 s stream each, on one replica: served / refused by status, and
//       the peak number of Postgres backends of the replica (pg_stat_activity, every 50 ms);
//   (c) lock wait and lock hold p50/p99 from the replica's /metrics (hold: n/a until exported);
//   (d) N (10,000) concurrent long, slow streams on one replica: how many were open at once,
//       statuses, and the replica's RSS (VmRSS at that peak, and VmHWM) from /proc.
// Then the replica is stopped (SIGTERM drains) and the project's verify
// (packages/server/dist/src/verify.js) checks that mode's database.
// Real processes: an embedded Postgres (durable — fsync, synchronous_commit, full_page_writes on —
// unless --no-durable), the simulator, one replica per mode, each mode on a fresh database; this
// process generates load with node:http, one socket per call. Bounded in time; every process is
// stopped at the end and on failure.
//
//   npx tsc -b && node scripts/bench-concurrency.mjs [--modes serialize,reserve] [--k 8] [--users 200]
//     [--streams 10000] [--stream-s 3] [--long-stream-s 60] [--ramp-per-s 1000] [--no-durable] [--skip-streams]
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { spawnReplica, startEmbeddedCluster } from '@metergate/testkit';
import { ROOT } from './lib/throwaway-pg.mjs';

const FILES_NEEDED = 65_536;
const SIM_KEY = `bench-sim-${randomBytes(6).toString('hex')}`;
const ADMIN = `bench-admin-${randomBytes(12).toString('hex')}`;
const GRANT_USD = '10';
const TOKENS_PER_STREAM = 20;
const ADMIN_CONCURRENCY = 32;
const POLL_MS = 50;
/** Files a replica has open besides its streams' two sockets each (pools, logs, libraries). */
const FILES_SLACK = 200;

const { values: opts } = parseArgs({
  options: {
    modes: { type: 'string', default: 'serialize,reserve' },
    k: { type: 'string', default: '8' },
    users: { type: 'string', default: '200' },
    streams: { type: 'string', default: '10000' },
    'stream-s': { type: 'string', default: '3' },
    'long-stream-s': { type: 'string', default: '60' },
    'ramp-per-s': { type: 'string', default: '1000' },
    'no-durable': { type: 'boolean', default: false },
    'skip-streams': { type: 'boolean', default: false },
    'replica-env': { type: 'string', multiple: true, default: [] },
  },
});
const S = {
  modes: opts.modes.split(',').map((m) => m.trim()).filter(Boolean),
  k: Number(opts.k), users: Number(opts.users), streams: opts['skip-streams'] ? 0 : Number(opts.streams),
  streamS: Number(opts['stream-s']), longStreamS: Number(opts['long-stream-s']), rampPerS: Number(opts['ramp-per-s']), durable: !opts['no-durable'],
};
for (const [name, value] of Object.entries(S)) if (typeof value === 'number' && !(Number.isFinite(value) && value >= 0)) throw new Error(`${name} must be a non-negative number`);
if (S.rampPerS <= 0) throw new Error('--ramp-per-s must be positive');
/** --replica-env NAME=VALUE (repeatable): extra replica settings, e.g. pool sizes for a mode that needs them. */
const REPLICA_ENV = Object.fromEntries(opts['replica-env'].map((pair) => {
  const at = pair.indexOf('=');
  if (at <= 0) throw new Error(`--replica-env wants NAME=VALUE, got ${pair}`);
  return [pair.slice(0, at), pair.slice(at + 1)];
}));
for (const mode of S.modes) if (mode !== 'serialize' && mode !== 'reserve') throw new Error(`unknown mode ${mode} (serialize|reserve)`);

const openFilesLimit = () => Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim());

async function main() {
  const perModeS = S.k * S.streamS * 2 + S.streamS * 4 + (S.streams > 0 ? S.streams / S.rampPerS + S.longStreamS + 240 : 0) + 180;
  const deadlineMs = (S.modes.length * perModeS + 120) * 1000;
  console.log(`# bench:concurrency — ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), node ${process.version}, ` +
    `open files limit ${openFilesLimit()}; load generator, replica, simulator and Postgres share this machine`);
  console.log(`# command: npm run bench:concurrency${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`);
  console.log(`# settings: ${JSON.stringify(S)}, run deadline ${deadlineMs / 1000} s`);
  const filesNeeded = 2 * S.streams + FILES_SLACK;
  if (S.streams > 0 && openFilesLimit() < filesNeeded) {
    console.log(`# WARNING: ${S.streams} streams need about ${filesNeeded} open files in the replica (one client and one upstream socket each, ` +
      `plus ${FILES_SLACK}); the limit here is ${openFilesLimit()} and cannot be raised (${canRaise ? 'raising failed' : 'ulimit -n refused'}): streams beyond it fail to open`);
  }
  const cleanup = [];
  const stopAll = async () => { for (const step of cleanup.reverse()) await step().catch((e) => console.error(`cleanup: ${e.message}`)); cleanup.length = 0; };
  let timedOut = false;
  const deadline = setTimeout(() => { timedOut = true; console.error('# bench:concurrency: run deadline passed, stopping'); void stopAll().then(() => process.exit(1)); }, deadlineMs);
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => { void stopAll().then(() => process.exit(130)); });
  try {
    const pgSettings = S.durable
      ? { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on', max_connections: '300' }
      : { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '300' };
    const cluster = await startEmbeddedCluster(pgSettings);
    cleanup.push(() => cluster.destroy());
    console.log(`# postgres: embedded 17, ${JSON.stringify(pgSettings)}${S.durable ? ' (durable)' : ' (NOT durable: --no-durable)'}`);
    const sim = await startSimulatorProcess();
    cleanup.push(async () => sim.stop());
    let failures = 0;
    for (const mode of S.modes) failures += await benchMode(mode, cluster, sim, cleanup);
    return failures === 0 ? 0 : 1;
  } catch (error) {
    console.error(`# bench:concurrency failed: ${error?.stack ?? error}`);
    return 1;
  } finally {
    clearTimeout(deadline);
    if (!timedOut) await stopAll();
  }
}

async function startSimulatorProcess() {
  const child = spawn(process.execPath, [path.join(ROOT, 'packages/simulator/dist/src/main.js'), '--host', '127.0.0.1', '--port', '0', '--api-key', SIM_KEY],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    void exited.then(() => reject(new Error('simulator exited before listening')));
  });
  return {
    url: JSON.parse(line).url,
    async stop() { if (child.exitCode === null && child.signalCode === null) { child.kill('SIGTERM'); await exited; } },
  };
}

/** Returns 1 when the mode's books fail verify, else 0. */
async function benchMode(mode, cluster, sim, cleanup) {
  const database = `bench_${mode}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  await admin.query(`create database ${database}`);
  await admin.end();
  const databaseUrl = new URL(cluster.url);
  databaseUrl.pathname = `/${database}`;
  const replicaId = `bench-${mode}`;
  // Pools and queues at their defaults, so (b) and (d) show what a default replica does; only
  // the limits a 10,000-stream run needs are raised (upstream sockets, queue waits long enough
  // that (a) measures serialization rather than refusals).
  const env = {
    BARRIER: mode, LOG_LEVEL: 'warn', REPLICA_ID: replicaId, UPSTREAM_CONNECTIONS_MAX: String(Math.max(256, S.streams + 100)),
    BARRIER_QUEUE_WAIT_MS: String(Math.max(30_000, S.k * S.streamS * 1000 * 2)), ...REPLICA_ENV,
  };
  const replica = await spawnReplica({ databaseUrl: databaseUrl.toString(), upstreamUrl: sim.url, upstreamKey: SIM_KEY, adminToken: ADMIN, env });
  cleanup.push(() => replica.stop(60_000));
  const knows = await barrierKnown(replica.url, mode);
  console.log(`\n## BARRIER=${mode} — replica pid ${replica.pid}, env ${JSON.stringify(env)}; ${knows}`);
  const monitor = new pg.Client({ connectionString: cluster.url });
  await monitor.connect();
  try {
    await phaseOneUser(replica, sim);
    await phaseManyUsers(replica, monitor, database);
    await printLockTimes(replica);
    if (S.streams > 0) await phaseOpenStreams(replica, monitor, database);
  } finally {
    await monitor.end();
    const code = await replica.stop(60_000);
    console.log(`replica stopped (exit ${code})`);
  }
  return runVerify(databaseUrl.toString());
}

/** Whether the replica reports a barrier mode on /metrics (a `mode` label on a barrier/lock metric). */
async function barrierKnown(url, mode) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const modes = [...new Set([...text.matchAll(/^metergate_[a-z_]*(?:barrier|lock)[a-z_]*\{[^}]*mode="([^"]+)"/gm)].map((m) => m[1]))];
  if (modes.length === 0) return 'the replica exports no barrier mode on /metrics (a build without BARRIER runs serialize)';
  return modes.includes(mode) ? `the replica reports mode="${mode}"` : `WARNING: asked for ${mode}, the replica reports ${modes.join(', ')}`;
}

function streamBody(user, seconds) {
  const chunkDelayMs = Math.max(1, Math.round((seconds * 1000) / TOKENS_PER_STREAM));
  return JSON.stringify({ model: 'openai/gpt-4o-mini', stream: true, user, messages: [{ role: 'user', content: 'bench' }],
    sim: { latency_ms: 0, chunk_delay_ms: chunkDelayMs, completion_tokens: TOKENS_PER_STREAM, keepalive_ms: 0 } });
}

/** One POST on its own socket; resolves with status, timings and whether the stream ended with [DONE]. Never rejects. */
function call(url, authorization, body, timeoutMs, events = {}) {
  return new Promise((resolve) => {
    const started = performance.now();
    let settled = false;
    const finish = (result) => { if (!settled) { settled = true; resolve({ ...result, ms: performance.now() - started }); } };
    const request = http.request(url, { method: 'POST', agent: false, timeout: timeoutMs,
      headers: { authorization, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (response) => {
      const open = response.statusCode === 200;
      if (open) events.onOpen?.();
      let tail = '';
      response.on('data', (chunk) => { tail = (tail + chunk.toString('latin1')).slice(-64); });
      response.on('end', () => {
        if (open) events.onClose?.();
        // An error body ends with `"code":"<code>","param":null}}`: within the 64 bytes kept.
        finish({ status: response.statusCode, done: tail.trimEnd().endsWith('data: [DONE]'), code: open ? undefined : /"code":"([a-z_]+)"/.exec(tail)?.[1] });
      });
      response.on('error', (error) => { if (open) events.onClose?.(); finish({ status: response.statusCode, done: false, error: error.code ?? error.message }); });
    });
    request.on('timeout', () => request.destroy(new Error('client timeout')));
    // code and message: "socket hang up" (closed without an answer) and "read ECONNRESET" (a
    // TCP reset) share the code ECONNRESET.
    request.on('error', (error) => finish({ status: 0, done: false, error: `${error.code ?? ''} ${error.message}`.trim() }));
    request.end(body);
  });
}

async function adminPost(url, pathName, payload) {
  const result = await new Promise((resolve, reject) => {
    const body = JSON.stringify(payload);
    const request = http.request(`${url}${pathName}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (response) => {
      let text = '';
      response.on('data', (chunk) => { text += chunk; });
      response.on('end', () => resolve({ status: response.statusCode, text }));
    });
    request.on('error', reject);
    request.end(body);
  });
  if (result.status !== 201) throw new Error(`POST ${pathName}: ${result.status} ${result.text.slice(0, 200)}`);
  return JSON.parse(result.text);
}

/** Creates users prefix-0..n-1 with GRANT_USD each through the admin API; returns their keys. */
async function createUsers(url, prefix, n) {
  const started = performance.now();
  const keys = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(ADMIN_CONCURRENCY, n) }, async () => {
    while (next < n) {
      const i = next++;
      const id = `${prefix}-${i}`;
      keys[i] = { id, key: (await adminPost(url, '/admin/users', { id })).api_key };
      await adminPost(url, `/admin/users/${id}/credits`, { amount_usd: GRANT_USD, note: 'bench grant' });
    }
  }));
  if (n >= 1000) console.log(`  (created ${n} users through the admin API in ${((performance.now() - started) / 1000).toFixed(1)} s)`);
  return keys;
}

/** Calls by outcome: "200" (ended with [DONE]), "200-cut", "<status> <error code>", or the socket error. */
const countBy = (results) => results.reduce((acc, r) => {
  const k = r.status === 200 ? (r.done ? '200' : '200-cut') : r.status === 0 ? r.error : `${r.status}${r.code ? ` ${r.code}` : ''}`;
  acc[k] = (acc[k] ?? 0) + 1;
  return acc;
}, {});

async function phaseOneUser(replica, sim) {
  const [user] = await createUsers(replica.url, 'one', 1);
  const body = streamBody(user.id, S.streamS);
  const timeoutMs = (S.k * S.streamS * 2 + 60) * 1000;
  const direct = await timed(() => Promise.all(Array.from({ length: S.k }, () => call(`${sim.url}/chat/completions`, `Bearer ${SIM_KEY}`, body, timeoutMs))));
  const metered = await timed(() => Promise.all(Array.from({ length: S.k }, () => call(`${replica.url}/v1/chat/completions`, `Bearer ${user.key}`, body, timeoutMs))));
  console.log(`(a) one user × ${S.k} parallel streams of ~${S.streamS} s (${TOKENS_PER_STREAM} tokens): ` +
    `direct to the simulator ${(direct.ms / 1000).toFixed(2)} s ${JSON.stringify(countBy(direct.value))}; ` +
    `through Metergate ${(metered.ms / 1000).toFixed(2)} s ${JSON.stringify(countBy(metered.value))}; ` +
    `per-stream end times through Metergate: ${metered.value.map((r) => (r.ms / 1000).toFixed(1)).sort((x, y) => x - y).join(', ')} s`);
}

async function timed(run) {
  const started = performance.now();
  const value = await run();
  return { value, ms: performance.now() - started };
}

/** Polls pg_stat_activity every POLL_MS for the replica's backends (its pools' application_name) until `until` settles. */
async function peakBackends(monitor, database, until) {
  let done = false;
  void until.finally(() => { done = true; });
  let peak = 0;
  while (!done) {
    const { rows: [row] } = await monitor.query(`select count(*)::int as n from pg_stat_activity where datname = $1::text and application_name like 'metergate:%'`, [database]);
    peak = Math.max(peak, row.n);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  return peak;
}

async function phaseManyUsers(replica, monitor, database) {
  const users = await createUsers(replica.url, 'many', S.users);
  const timeoutMs = (S.streamS * 4 + 60) * 1000;
  const started = performance.now();
  const run = Promise.all(users.map((u) => call(`${replica.url}/v1/chat/completions`, `Bearer ${u.key}`, streamBody(u.id, S.streamS), timeoutMs)));
  const peak = await peakBackends(monitor, database, run);
  const results = await run;
  const served = results.filter((r) => r.status === 200 && r.done).length;
  console.log(`(b) ${S.users} users × one ~${S.streamS} s stream at once on one replica: served ${served}, refused ${S.users - served}, ` +
    `statuses ${JSON.stringify(countBy(results))}, wall ${((performance.now() - started) / 1000).toFixed(2)} s, peak Postgres backends of the replica ${peak}`);
}

/** Histogram quantile as the upper bound of the first bucket reaching it (Prometheus-style, no interpolation). */
function histogramQuantiles(text, name) {
  const buckets = new Map();
  for (const match of text.matchAll(new RegExp(`^${name}_bucket\\{([^}]*)\\} (\\S+)$`, 'gm'))) {
    const le = /le="([^"]+)"/.exec(match[1])[1];
    buckets.set(le, (buckets.get(le) ?? 0) + Number(match[2]));
  }
  if (buckets.size === 0) return null;
  const sorted = [...buckets.entries()].map(([le, n]) => [le === '+Inf' ? Infinity : Number(le), n]).sort((x, y) => x[0] - y[0]);
  const count = sorted[sorted.length - 1][1];
  const q = (p) => { const hit = sorted.find(([, n]) => n >= p * count); return hit[0] === Infinity ? '> largest bucket' : `≤ ${hit[0]} s`; };
  return count === 0 ? { count } : { count, p50: q(0.5), p99: q(0.99) };
}

async function printLockTimes(replica) {
  const text = await (await fetch(`${replica.url}/metrics`)).text();
  const format = (name) => {
    const h = histogramQuantiles(text, name);
    if (h === null) return `${name}: n/a (not exported by this build)`;
    return h.count === 0 ? `${name}: no samples` : `${name}: p50 ${h.p50}, p99 ${h.p99} (n=${h.count})`;
  };
  console.log(`(c) after (a)+(b): ${format('metergate_lock_wait_seconds')}; ${format('metergate_lock_hold_seconds')}`);
}

function rssKiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

/** The kernel's count of connections dropped because a listen queue was full (this network namespace, all sockets). */
function listenOverflows() {
  try {
    const [names, values] = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((line) => line.startsWith('TcpExt:')).map((line) => line.split(/\s+/));
    return Number(values[names.indexOf('ListenOverflows')]);
  } catch {
    return NaN;
  }
}

function openFiles(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

async function phaseOpenStreams(replica, monitor, database) {
  const users = await createUsers(replica.url, 'open', S.streams);
  const before = { ...rssKiB(replica.pid), files: openFiles(replica.pid) };
  const lastLogBefore = replica.logs[replica.logs.length - 1];
  const overflowsBefore = listenOverflows();
  let open = 0;
  // Two peaks: streams open at once (status 200 received, not ended) and the replica's open files
  // (every connected socket, including calls still waiting for admission), each with the RSS then.
  const peak = { open: { n: 0, rss: before.rss }, files: { n: before.files, rss: before.rss } };
  const events = { onOpen: () => { open += 1; }, onClose: () => { open -= 1; } };
  const timeoutMs = (S.longStreamS * 2 + 180) * 1000;
  const started = performance.now();
  // Connections are opened at rampPerS, not all in one tick: a burst of 10,000 connects overflows
  // the replica's listen backlog (511) and measures the kernel's SYN handling instead.
  const run = Promise.all(users.map(async (u, i) => {
    await new Promise((resolve) => setTimeout(resolve, (i * 1000) / S.rampPerS));
    return call(`${replica.url}/v1/chat/completions`, `Bearer ${u.key}`, streamBody(u.id, S.longStreamS), timeoutMs, events);
  }));
  let done = false;
  void run.finally(() => { done = true; });
  const backends = peakBackends(monitor, database, run);
  while (!done) {
    const files = openFiles(replica.pid);
    const openNow = open;
    if (openNow > peak.open.n || files > peak.files.n) {
      const { rss } = rssKiB(replica.pid);
      if (openNow > peak.open.n) peak.open = { n: openNow, rss, files };
      if (files > peak.files.n) peak.files = { n: files, rss };
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const results = await run;
  const after = rssKiB(replica.pid);
  const mib = (kib) => `${(kib / 1024).toFixed(0)} MiB`;
  console.log(`(d) ${S.streams} users × one ~${S.longStreamS} s stream, opened at ${S.rampPerS}/s, on one replica: statuses ${JSON.stringify(countBy(results))}, ` +
    `wall ${((performance.now() - started) / 1000).toFixed(1)} s, peak Postgres backends ${await backends}`);
  console.log(`    streams open at once: peak ${peak.open.n} (${peak.open.n === S.streams ? 'all' : 'NOT all'} ${S.streams} open together), replica RSS then ${mib(peak.open.rss)}`);
  console.log(`    replica open files: before ${before.files}, peak ${peak.files.n} (client sockets, including calls waiting for admission), RSS then ${mib(peak.files.rss)}`);
  console.log(`    replica RSS: before ${mib(before.rss)}, high-water mark (VmHWM) ${mib(after.hwm)} (goal < 1 GiB)`);
  console.log(`    listen queue overflows (kernel TcpExt ListenOverflows, whole machine) during (d): ${listenOverflows() - overflowsBefore}`);
  for (const [kind, ms] of Object.entries(errorTimes(results))) console.log(`    client-side ${kind}: ${ms.length} calls, at ${(Math.min(...ms) / 1000).toFixed(1)}–${(Math.max(...ms) / 1000).toFixed(1)} s after sending`);
  // replica.logs keeps the last 2,000 lines: the ones after the last line seen before (d), or all of them.
  const newLogs = replica.logs.slice(replica.logs.lastIndexOf(lastLogBefore) + 1);
  const logged = summarizeLogs(newLogs);
  if (logged !== '') console.log(`    replica log lines during (d) (${newLogs.length}${newLogs.length === replica.logs.length ? ', at most the last 2,000' : ''}): ${logged}`);
}

function errorTimes(results) {
  const out = {};
  for (const r of results) if (r.error !== undefined) (out[r.error] ??= []).push(r.ms);
  return out;
}

/** Counts of the replica's log lines (LOG_LEVEL=warn unless --replica-env says otherwise) by message (top 5). */
function summarizeLogs(lines) {
  const counts = new Map();
  for (const line of lines) {
    const msg = `${line.level ?? ''} ${String(line.msg ?? line.line ?? '?').slice(0, 100)}`;
    counts.set(msg, (counts.get(msg) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([msg, n]) => `${n} × "${msg}"`).join('; ');
}

/** The project's verify as a real process on the mode's database; prints its outcome. Returns 0 when clean. */
async function runVerify(databaseUrl) {
  const result = spawnSync(process.execPath, [path.join(ROOT, 'packages/server/dist/src/verify.js')], {
    env: { PATH: process.env.PATH ?? '', DATABASE_URL: databaseUrl, NODE_ENV: 'test' }, encoding: 'utf8', timeout: 120_000,
  });
  const outcome = result.status === 0 ? 'OK (exit 0)' : `FAILED (exit ${result.status ?? result.signal})`;
  console.log(`verify: ${outcome}\n${`${result.stdout}${result.stderr}`.trimEnd().split('\n').map((l) => `  ${l}`).join('\n')}`);
  return result.status === 0 ? 0 : 1;
}

// N streams need ~N sockets here and ~2N in the replica (client + upstream): raise the
// open-files limit, inherited by every child, by running again under a shell that raises it
// (where the container allows it; otherwise main() says what the limit allows).
const canRaise = spawnSync('sh', ['-c', `ulimit -n ${FILES_NEEDED}`]).status === 0;
if (process.env.MG_BENCH_ULIMIT_RAISED !== '1' && S.streams > 0 && openFilesLimit() < FILES_NEEDED && canRaise) {
  const child = spawn('sh', ['-c', `ulimit -n ${FILES_NEEDED} && exec "$@"`, 'sh', process.execPath, ...process.execArgv, ...process.argv.slice(1)],
    { stdio: 'inherit', env: { ...process.env, MG_BENCH_ULIMIT_RAISED: '1' } });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal === null ? 0 : 1)));
} else {
  process.exitCode = await main();
}
