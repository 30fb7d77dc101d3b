#!/usr/bin/env node
// `npm run bench`: metered requests/s and the latency the proxy adds, measured on this machine.
// Real processes: an embedded Postgres, the OpenRouter simulator, one proxy replica; this
// process generates load. Each phase sends the same requests straight to the simulator
// ("direct") and through the proxy ("metered"), so the difference is what metering costs:
// auth lookup, admission read, cost barrier, request row, settle, relay.
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import path from 'node:path';
import os from 'node:os';
import { Agent, request } from 'undici';
import { spawnReplica } from '@metergate/testkit';
import { ROOT, startThrowawayPostgres } from './lib/throwaway-pg.mjs';

const { values: opts } = parseArgs({
  options: {
    requests: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '32' },
    users: { type: 'string', default: '64' },
    tokens: { type: 'string', default: '16' },
  },
});
const REQUESTS = Number(opts.requests);
const CONCURRENCY = Number(opts.concurrency);
const USERS = Number(opts.users);
const TOKENS = Number(opts.tokens);
const ADMIN = 'bench-admin-token-0123456789';
const SIM_KEY = 'bench-sim-key';
const agent = new Agent({ connections: CONCURRENCY * 2, keepAliveTimeout: 30_000 });

async function startSimulator() {
  const child = spawn(process.execPath, [path.join(ROOT, 'packages/simulator/dist/src/main.js'), '--port', '0', '--api-key', SIM_KEY],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise((resolve) => createInterface({ input: child.stdout }).once('line', resolve));
  return { url: JSON.parse(line).url, stop: () => child.kill('SIGTERM') };
}

async function createUsers(proxyUrl) {
  const keys = [];
  for (let i = 0; i < USERS; i += 1) {
    const id = `bench-${i}`;
    const created = await request(`${proxyUrl}/admin/users`, { method: 'POST', dispatcher: agent,
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ id }) });
    const { api_key: key } = await created.body.json();
    const grant = await request(`${proxyUrl}/admin/users/${id}/credits`, { method: 'POST', dispatcher: agent,
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ amount_usd: '1000' }) });
    await grant.body.dump();
    keys.push({ id, key });
  }
  return keys;
}

function body(stream, user) {
  return JSON.stringify({ model: 'openai/gpt-4o-mini', stream, user, messages: [{ role: 'user', content: 'Benchmark prompt, about this long.' }], sim: { completion_tokens: TOKENS } });
}

/** One request, timed to the last byte (and first byte); throws on a non-200. */
async function call(url, authorization, payload) {
  const started = performance.now();
  const response = await request(url, { method: 'POST', dispatcher: agent, headers: { authorization, 'content-type': 'application/json' }, body: payload });
  let firstByteMs = null;
  for await (const _chunk of response.body) firstByteMs ??= performance.now() - started;
  if (response.statusCode !== 200) throw new Error(`status ${response.statusCode}`);
  return { ms: performance.now() - started, firstByteMs };
}

async function phase(name, target) {
  const samples = [];
  let next = 0;
  let failures = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < REQUESTS) {
      const i = next++;
      try {
        samples.push(await target(i));
      } catch {
        failures += 1;
      }
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  const pct = (p) => ms[Math.min(ms.length - 1, Math.floor((p / 100) * ms.length))] ?? NaN;
  return { name, rps: samples.length / seconds, p50: pct(50), p99: pct(99), failures };
}

const pg = await startThrowawayPostgres('bench');
const sim = await startSimulator();
const replica = await spawnReplica({ databaseUrl: pg.url, upstreamUrl: sim.url, upstreamKey: SIM_KEY, adminToken: ADMIN, env: { LOG_LEVEL: 'warn' } });
try {
  const users = await createUsers(replica.url);
  const direct = (stream) => (i) => call(`${sim.url}/chat/completions`, `Bearer ${SIM_KEY}`, body(stream, users[i % USERS].id));
  const metered = (stream) => (i) => call(`${replica.url}/v1/chat/completions`, `Bearer ${users[i % USERS].key}`, body(stream, users[i % USERS].id));
  await phase('warm-up', metered(true));
  const rows = [];
  for (const stream of [false, true]) {
    const d = await phase(`direct ${stream ? 'stream' : 'json'}`, direct(stream));
    const m = await phase(`metered ${stream ? 'stream' : 'json'}`, metered(stream));
    rows.push(d, m, { name: `added by proxy (${stream ? 'stream' : 'json'})`, rps: NaN, p50: m.p50 - d.p50, p99: m.p99 - d.p99, failures: 0 });
  }
  console.log(`\nMetergate benchmark — ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), node ${process.version}, ` +
    `${REQUESTS} requests per phase, concurrency ${CONCURRENCY}, ${USERS} users, ${TOKENS} tokens per completion, ` +
    `Postgres ${pg.embedded ? 'embedded (fsync off)' : 'at DATABASE_URL'}; load generator, proxy, simulator and Postgres share this machine.\n`);
  console.log('phase                         req/s    p50 ms   p99 ms  failures');
  for (const r of rows) {
    console.log(`${r.name.padEnd(28)} ${Number.isNaN(r.rps) ? '       -' : r.rps.toFixed(0).padStart(8)} ${r.p50.toFixed(2).padStart(9)} ${r.p99.toFixed(2).padStart(8)} ${String(r.failures).padStart(9)}`);
  }
  console.log(`\nReproduce: npm run bench -- --requests ${REQUESTS} --concurrency ${CONCURRENCY} --users ${USERS} --tokens ${TOKENS}`);
} finally {
  await replica.stop();
  sim.stop();
  await agent.close();
  await pg.stop();
}
