import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './cluster.js';
import { waitForPort } from './port.js';

const INSTALL_HINT = 'pgbouncer is not installed: run `bash scripts/ci-deps.sh` (installs Debian\'s pgbouncer; `npm test` runs it first)';

/** PgBouncer refuses to run as root; as root it is started with `-u` as this user. */
const UNPRIVILEGED_USER = 'nobody';

/** Path of the pgbouncer binary; throws (never skips) when it is missing. */
export function findPgBouncer(): string {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/bin'];
  for (const dir of dirs) {
    const candidate = path.join(dir, 'pgbouncer');
    if (dir !== '' && existsSync(candidate)) return candidate;
  }
  throw new Error(INSTALL_HINT);
}

export interface PgBouncerOptions {
  /** Direct URL of the Postgres behind it (user, password, host, port; its database is the one `url` names). */
  databaseUrl: string;
  /** Server connections per (database, user) pair: what transaction pooling multiplexes clients onto. */
  defaultPoolSize: number;
  /** Client connections accepted (default 2000). */
  maxClientConn?: number;
  /** How long a client may wait inside PgBouncer for a server connection before an error (default 5 s). */
  queryWaitTimeoutS?: number;
  /** Extra `[pgbouncer]` settings, written verbatim (they win over the defaults). */
  settings?: Record<string, string>;
  startTimeoutMs?: number;
}

export interface PgBouncer {
  /** databaseUrl with host and port replaced by PgBouncer's: the same database, user and password. */
  readonly url: string;
  /** The admin console (`SHOW POOLS`, `SHOW STATS`, ...): database `pgbouncer`, same user. */
  readonly adminUrl: string;
  readonly port: number;
  readonly dir: string;
  readonly pid: number;
  /** The last lines PgBouncer logged (stderr), for failure messages. */
  output(): string;
  /** Stops PgBouncer (SIGTERM, SIGKILL after 5 s) and deletes its directory. */
  stop(): Promise<void>;
}

/**
 * Renders pgbouncer.ini. Transaction pooling, as a deployment in front of many replicas would
 * run it. Every database of the cluster is reachable (`* =` fallback), so the tests' per-module
 * databases need no entry of their own. Clients and PgBouncer authenticate with SCRAM against a
 * plain-text auth file; PgBouncer then answers whatever the server asks (the embedded cluster
 * uses `password`) with the same password.
 */
export function renderPgBouncerConfig(places: { port: number; serverHost: string; serverPort: number; authFile: string; adminUser: string },
  options: Pick<PgBouncerOptions, 'defaultPoolSize' | 'maxClientConn' | 'queryWaitTimeoutS' | 'settings'>): string {
  if (!Number.isInteger(options.defaultPoolSize) || options.defaultPoolSize < 1) throw new Error('defaultPoolSize must be a positive integer');
  const settings: Record<string, string> = {
    listen_addr: '127.0.0.1',
    listen_port: String(places.port),
    // No Unix socket: its default directory (/tmp) is shared, and the tests connect over TCP.
    unix_socket_dir: '',
    auth_type: 'scram-sha-256',
    auth_file: places.authFile,
    admin_users: places.adminUser,
    pool_mode: 'transaction',
    max_client_conn: String(options.maxClientConn ?? 2000),
    default_pool_size: String(options.defaultPoolSize),
    min_pool_size: '0',
    reserve_pool_size: '0',
    query_wait_timeout: String(options.queryWaitTimeoutS ?? 5),
    // node-postgres sends statement_timeout as a startup parameter (pools.ts), which PgBouncer
    // cannot replay per transaction; set it on the database or role instead (docker/README.md).
    ignore_startup_parameters: 'statement_timeout,extra_float_digits',
    // Logs go to stderr (captured); no pid file to clean up.
    logfile: '',
    pidfile: '',
    log_connections: '0',
    log_disconnections: '0',
    log_pooler_errors: '1',
    ...options.settings,
  };
  const lines = ['[databases]', `* = host=${places.serverHost} port=${places.serverPort}`, '', '[pgbouncer]'];
  for (const [name, value] of Object.entries(settings)) lines.push(`${name} = ${value}`);
  return `${lines.join('\n')}\n`;
}

/** Quotes a user or password for PgBouncer's auth file (`"name" "secret"`, `"` doubled). */
function authFileLine(user: string, password: string): string {
  const quote = (text: string) => `"${text.replace(/"/g, '""')}"`;
  return `${quote(user)} ${quote(password)}\n`;
}

function unprivilegedIds(): { uid: number; gid: number } {
  const result = spawnSync('id', ['-u', UNPRIVILEGED_USER], { encoding: 'utf8' });
  const group = spawnSync('id', ['-g', UNPRIVILEGED_USER], { encoding: 'utf8' });
  const uid = Number(result.stdout.trim());
  const gid = Number(group.stdout.trim());
  if (result.status !== 0 || group.status !== 0 || !Number.isInteger(uid) || !Number.isInteger(gid)) {
    throw new Error(`running as root, PgBouncer needs the unprivileged user "${UNPRIVILEGED_USER}", which was not found`);
  }
  return { uid, gid };
}

/**
 * A real PgBouncer (Debian's binary, foreground) in transaction pooling mode in front of
 * `databaseUrl`, on a free loopback port, with its config and auth file in a temp dir.
 */
export async function startPgBouncer(options: PgBouncerOptions): Promise<PgBouncer> {
  const binary = findPgBouncer();
  const server = new URL(options.databaseUrl);
  const user = decodeURIComponent(server.username);
  if (user === '') throw new Error('databaseUrl must name a user');
  const asRoot = process.getuid?.() === 0;
  const dir = await mkdtemp(path.join(tmpdir(), 'mg-pgbouncer-'));
  const port = await freePort();
  const authFile = path.join(dir, 'userlist.txt');
  const configPath = path.join(dir, 'pgbouncer.ini');
  await writeFile(authFile, authFileLine(user, decodeURIComponent(server.password)), { mode: 0o600 });
  await writeFile(configPath, renderPgBouncerConfig({
    port, serverHost: server.hostname, serverPort: Number(server.port || 5432), authFile, adminUser: user,
  }, options), { mode: 0o600 });
  const args = ['-q', configPath];
  if (asRoot) {
    // It reads both files again on SIGHUP, after dropping root: the user must own them.
    const { uid, gid } = unprivilegedIds();
    await Promise.all([dir, authFile, configPath].map((file) => chown(file, uid, gid)));
    args.unshift('-u', UNPRIVILEGED_USER);
  }
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => { output = (output + chunk.toString()).slice(-8_000); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, options.startTimeoutMs ?? 10_000, () => child.exitCode !== null || child.signalCode !== null, 'pgbouncer');
  } catch (error) {
    await stop();
    throw new Error(`pgbouncer did not start: ${(error as Error).message}\n${output}`, { cause: error });
  }
  const url = new URL(options.databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  const adminUrl = new URL(url);
  adminUrl.pathname = '/pgbouncer';
  return { url: url.toString(), adminUrl: adminUrl.toString(), port, dir, pid: child.pid!, output: () => output, stop };
}
