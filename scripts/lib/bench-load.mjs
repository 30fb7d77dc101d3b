#!/usr/bin/env node
// The benchmark's load generator, in a process of its own (forked with an IPC channel) so its
// CPU is neither shared with the orchestrator nor hidden: each run reports its own CPU time.
// Message in: { url, concurrency, requestsMax, durationMs, stream, calls: [{ authorization, body }] }
// (calls are used round robin). Message out: every latency, the failures by reason, its CPU.
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';

const pools = new Map();
function poolFor(origin) {
  let pool = pools.get(origin);
  if (pool === undefined) {
    // More connections than any run's concurrency, so no request ever waits for a socket here.
    pool = new Pool(origin, { connections: 128, keepAliveTimeout: 30_000, headersTimeout: 60_000, bodyTimeout: 60_000 });
    pools.set(origin, pool);
  }
  return pool;
}

const DONE = 'data: [DONE]';

/** One call, timed to its first and last body byte; a stream must end with [DONE]. */
async function call(pool, path, stream, { authorization, body }) {
  const started = performance.now();
  const response = await pool.request({ method: 'POST', path, headers: { authorization, 'content-type': 'application/json' }, body });
  let firstByteMs = null;
  let tail = '';
  for await (const chunk of response.body) {
    firstByteMs ??= performance.now() - started;
    if (stream) tail = (tail + chunk.toString('latin1')).slice(-64);
  }
  const ms = performance.now() - started;
  if (response.statusCode !== 200) return { error: `status ${response.statusCode}` };
  if (stream && !tail.includes(DONE)) return { error: 'stream without [DONE]' };
  return { ms, firstByteMs };
}

async function run({ url, concurrency, requestsMax, durationMs, stream, calls }) {
  const target = new URL(url);
  const pool = poolFor(target.origin);
  const ms = [];
  const ttfb = [];
  const errors = {};
  let next = 0;
  // Throughput counts the calls completed inside the window only: the calls still in flight
  // at the deadline finish afterwards with no new ones started, a tail that would otherwise
  // count against slow paths once per slice.
  let inWindow = 0;
  let lastEnd = performance.now();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < requestsMax && performance.now() < deadline) {
      const i = next++;
      let result;
      try {
        result = await call(pool, target.pathname, stream, calls[i % calls.length]);
      } catch (error) {
        result = { error: error.code ?? error.message };
      }
      if (result.error !== undefined) errors[result.error] = (errors[result.error] ?? 0) + 1;
      else {
        ms.push(result.ms);
        ttfb.push(result.firstByteMs);
        const end = performance.now();
        if (end <= deadline) { inWindow += 1; lastEnd = end; }
      }
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  // Raw samples: the orchestrator merges the slices of one scenario before taking percentiles.
  const windowSeconds = ((next >= requestsMax ? lastEnd : deadline) - started) / 1000;
  return { ms, ttfb, errors, seconds, inWindow, windowSeconds, cpuMs: (cpu.user + cpu.system) / 1000 };
}

process.on('message', (message) => {
  if (message === 'exit') { void Promise.all([...pools.values()].map((p) => p.close())).finally(() => process.exit(0)); return; }
  run(message).then((result) => process.send({ result }), (error) => process.send({ error: error.stack ?? String(error) }));
});
// The orchestrator going away (crash, SIGKILL) closes the channel: never outlive it.
process.on('disconnect', () => process.exit(0));
