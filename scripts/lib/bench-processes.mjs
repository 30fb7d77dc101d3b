// The benchmark's processes: the OpenRouter simulator, the bare proxy, the load generator and
// Metergate replicas, each a child process on a free port, each with a stop() that waits for
// its exit (SIGKILL after a deadline), so nothing outlives the benchmark.
import { fork, spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { spawnReplica } from '@metergate/testkit';
import { ROOT } from './throwaway-pg.mjs';

const STOP_TIMEOUT_MS = 10_000;
const START_TIMEOUT_MS = 20_000;

function stopper(child) {
  const exited = new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  };
}

/** Spawns a script that prints one JSON line with its url once listening. */
async function spawnListening(name, args, env) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { PATH: process.env.PATH ?? '', ...env } });
  const stop = stopper(child);
  try {
    const line = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not start`)), START_TIMEOUT_MS);
      child.once('exit', (code) => reject(new Error(`${name} exited (${code}) before listening`)));
      createInterface({ input: child.stdout }).once('line', (l) => { clearTimeout(timer); resolve(l); });
    });
    return { name, url: JSON.parse(line).url, pid: child.pid, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

export function startSimulator(apiKey) {
  return spawnListening('simulator', [path.join(ROOT, 'packages/simulator/dist/src/main.js'), '--port', '0', '--api-key', apiKey], {});
}

export function startBareProxy(upstreamUrl, upstreamKey) {
  return spawnListening('bare proxy', [path.join(ROOT, 'scripts/lib/bare-proxy.mjs')], { UPSTREAM_URL: upstreamUrl, UPSTREAM_KEY: upstreamKey });
}

/** The load generator: run(scenario) resolves with its measurements. */
export function startLoadGenerator() {
  const child = fork(path.join(ROOT, 'scripts/lib/bench-load.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const stop = stopper(child);
  let pending = null;
  child.on('message', (message) => {
    const settle = pending;
    pending = null;
    if (message.error !== undefined) settle?.reject(new Error(`load generator: ${message.error}`));
    else settle?.resolve(message.result);
  });
  child.once('exit', (code) => pending?.reject(new Error(`load generator exited (${code})`)));
  return {
    pid: child.pid, stop,
    run(scenario) {
      if (pending !== null) throw new Error('load generator busy');
      return new Promise((resolve, reject) => {
        pending = { resolve, reject };
        child.send(scenario);
      });
    },
  };
}

/** One Metergate replica in production mode with BARRIER=<mode>. */
export async function startMetergate({ databaseUrl, upstreamUrl, upstreamKey, adminToken, barrier, extraEnv = {} }) {
  const replica = await spawnReplica({
    databaseUrl, upstreamUrl, upstreamKey, adminToken,
    env: { NODE_ENV: 'production', LOG_LEVEL: 'info', BARRIER: barrier, REPLICA_ID: `bench-${barrier}`, ...extraEnv },
  });
  return { name: `Metergate ${barrier}`, url: replica.url, pid: replica.pid, stop: () => replica.stop(), reportedBarrier: () => reportedBarrier(replica) };
}

const MODE = /^(serialize|reserve)$/;

/**
 * The barrier mode the replica says it runs, from its logs (a field or line naming the
 * barrier) or its /metrics (series labelled mode="serialize"|"reserve", such as the lock-hold
 * histogram: read after traffic, since a labelled series appears only once used); null if it
 * says nothing (a replica that predates the BARRIER setting).
 */
async function reportedBarrier(replica) {
  for (const entry of replica.logs) {
    for (const [key, value] of Object.entries(entry)) {
      if (/barrier/i.test(key) && typeof value === 'string' && MODE.test(value)) return `${value} (log)`;
    }
    const line = typeof entry.line === 'string' ? /barrier\W+(serialize|reserve)\b/i.exec(entry.line) : null;
    if (line !== null) return `${line[1].toLowerCase()} (log)`;
  }
  try {
    const metrics = await (await fetch(`${replica.url}/metrics`)).text();
    const modes = new Set([...metrics.matchAll(/^metergate_\w+\{[^}]*\bmode="(serialize|reserve)"/gm)].map((m) => m[1]));
    return modes.size === 0 ? null : `${[...modes].join(' and ')} (/metrics mode label)`;
  } catch {
    return null;
  }
}
