#!/usr/bin/env node
// Measures the honest limits of the per-user serialize barrier on this machine:
//   1. one user's throughput ≈ 1 / upstream latency, however many replicas serve it;
//   2. streaming users at once per replica ≤ LOCK_POOL_SIZE (the next one gets 503).
// Real replica processes on an embedded Postgres of its own, the OpenRouter simulator with a
// fixed latency. Run:  npx tsc -b && node scripts/measure-barrier.mjs
// Options: --latency 50,100,200 (ms)  --calls 20  --pool 4  --replicas 2
import { parseArgs } from 'node:util';
import { chatCall, startEmbeddedCluster, startSimCluster } from '@metergate/testkit';

const { values } = parseArgs({
  options: {
    latency: { type: 'string', default: '50,100,200' },
    calls: { type: 'string', default: '20' },
    pool: { type: 'string', default: '4' },
    replicas: { type: 'string', default: '2' },
  },
});
const latencies = values.latency.split(',').map(Number);
const calls = Number(values.calls);
const pool = Number(values.pool);
const replicas = Number(values.replicas);
const ACQUIRE_TIMEOUT_MS = 500;
const body = (sim) => ({ model: 'openai/gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }], sim });

const pg = await startEmbeddedCluster();
let f;
try {
  f = await startSimCluster({
    replicas, databaseUrl: pg.url,
    env: { LOG_LEVEL: 'warn', LOCK_POOL_SIZE: String(pool), POOL_ACQUIRE_TIMEOUT_MS: String(ACQUIRE_TIMEOUT_MS), BARRIER_QUEUE_DEPTH_MAX: '10000', BARRIER_QUEUE_WAIT_MS: '600000', LOCK_TIMEOUT_MS: '60000' },
  });
  console.log(`# measure-barrier: ${replicas} replicas, LOCK_POOL_SIZE=${pool}, POOL_ACQUIRE_TIMEOUT_MS=${ACQUIRE_TIMEOUT_MS}, node ${process.version}`);
  await perUserThroughput(f);
  await streamingUsersPerReplica(f);
} finally {
  await f?.close();
  await pg.destroy();
}

/** N same-user calls at once, spread over the replicas, vs N different users' calls at once. */
async function perUserThroughput(f) {
  console.log('\n## One user: throughput vs upstream latency');
  console.log(`| upstream latency | ${calls} calls, one user | calls/s | 1 / latency | per-call overhead | ${pool} calls, ${pool} users at once |`);
  console.log('|---|---|---|---|---|---|');
  for (const latency of latencies) {
    const sim = { latency_ms: latency, chunk_delay_ms: 0, completion_tokens: 1 };
    const user = `same-${latency}`;
    const key = await f.cluster.createUser(user, 1_000_000_000n);
    await chatCall(f.cluster.urls[0], key, body(sim)); // warm-up
    const started = performance.now();
    const results = await Promise.all(Array.from({ length: calls }, (_, i) => chatCall(f.cluster.urls[i % replicas], key, body(sim), { timeoutMs: 600_000 })));
    const wallMs = performance.now() - started;
    if (results.some((r) => r.status !== 200)) throw new Error(`same-user calls failed: ${results.map((r) => r.status).join(',')}`);
    const keys = await Promise.all(Array.from({ length: pool }, (_, i) => f.cluster.createUser(`par-${latency}-${i}`, 1_000_000_000n)));
    const parStarted = performance.now();
    const parallel = await Promise.all(keys.map((k) => chatCall(f.cluster.urls[0], k, body(sim))));
    const parMs = performance.now() - parStarted;
    if (parallel.some((r) => r.status !== 200)) throw new Error(`parallel users failed: ${parallel.map((r) => r.status).join(',')}`);
    const perSecond = calls / (wallMs / 1000);
    console.log(`| ${latency} ms | ${wallMs.toFixed(0)} ms | ${perSecond.toFixed(1)} | ${(1000 / latency).toFixed(1)} | ${(wallMs / calls - latency).toFixed(1)} ms | ${parMs.toFixed(0)} ms |`);
  }
}

/** pool + 2 users each start one long stream on one replica at once. */
async function streamingUsersPerReplica(f) {
  const users = pool + 2;
  const keys = await Promise.all(Array.from({ length: users }, (_, i) => f.cluster.createUser(`stream-${i}`, 1_000_000_000n)));
  const sim = { latency_ms: 10, chunk_delay_ms: 50, completion_tokens: 40 }; // ~2 s each
  const results = await Promise.all(keys.map((key) => chatCall(f.cluster.urls[0], key, body(sim), { timeoutMs: 60_000 })));
  const streamed = results.filter((r) => r.status === 200).length;
  const refused = results.filter((r) => r.status === 503);
  const waits = refused.map((r) => (r.endedAtMs - r.sentAtMs).toFixed(0));
  console.log(`\n## Streaming users at once on one replica (LOCK_POOL_SIZE=${pool})`);
  console.log(`${users} users started a 2 s stream each at once: ${streamed} streamed, ${refused.length} got 503 ` +
    `(${[...new Set(refused.map((r) => r.errorCode))].join(', ')}; Retry-After ${refused[0]?.retryAfter ?? '-'}) after ${waits.join(', ')} ms`);
}
