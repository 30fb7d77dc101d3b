import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const MAIN = path.join(REPO_ROOT, 'packages/server/dist/src/main.js');

export interface ReplicaOptions {
  databaseUrl: string;
  upstreamUrl: string;
  upstreamKey: string;
  adminToken: string;
  /** Extra environment (LOCK_POOL_SIZE, REPLICA_ID, ...). */
  env?: Record<string, string>;
  startTimeoutMs?: number;
}

export interface Replica {
  readonly url: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Recent log lines (JSON objects where the line parsed), for assertions and debugging. */
  readonly logs: Array<Record<string, unknown>>;
  kill(signal: NodeJS.Signals): void;
  /** Resolves with the exit code (or signal name) when the process has exited. */
  exited: Promise<number | string>;
  /** SIGTERM and wait for exit (SIGKILL after timeoutMs). */
  stop(timeoutMs?: number): Promise<number | string>;
}

const LOG_LINES_MAX = 2_000;

/** Starts `node packages/server/dist/src/main.js` as a real process on 127.0.0.1:0. */
export async function spawnReplica(options: ReplicaOptions): Promise<Replica> {
  const child = spawn(process.execPath, [MAIN], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '', NODE_ENV: 'test', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info',
      DATABASE_URL: options.databaseUrl, OPENROUTER_BASE_URL: options.upstreamUrl,
      OPENROUTER_API_KEY: options.upstreamKey, ADMIN_TOKEN: options.adminToken, ...options.env,
    },
  });
  const logs: Array<Record<string, unknown>> = [];
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`replica did not start: ${JSON.stringify(logs.slice(-5))}`)), options.startTimeoutMs ?? 20_000);
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`replica exited (${code}) before listening: ${JSON.stringify(logs.slice(-5))}`)); });
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        const entry = parseLine(line);
        logs.push(entry);
        if (logs.length > LOG_LINES_MAX) logs.shift();
        // The start-up banner is printed whatever LOG_LEVEL says.
        const banner = /^Metergate is running at (\S+)/.exec(line);
        if (banner !== null) {
          clearTimeout(timer);
          resolve(banner[1]!);
        }
      });
    }
  });
  return {
    url, pid: child.pid!, child, logs, exited,
    kill: (signal) => { child.kill(signal); },
    async stop(timeoutMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

function parseLine(line: string): Record<string, unknown> {
  try {
    const parsed = JSON.parse(line) as unknown;
    return typeof parsed === 'object' && parsed !== null ? parsed as Record<string, unknown> : { line };
  } catch {
    return { line };
  }
}
