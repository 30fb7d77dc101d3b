import { CliError, ExitCode } from './errors.js';

/**
 * The CLI's one reading of the environment. It talks to Postgres directly, so what it needs is
 * the same DATABASE_URL the proxy uses (and, for `verify`, the proxy's lease timings); nothing
 * else in the package reads process.env.
 */
export interface CliConfig {
  readonly databaseUrl: string;
  /** host:port/database, without credentials: safe to print in error messages. */
  readonly databaseLabel: string;
}

const PROTOCOLS = new Set(['postgres:', 'postgresql:']);

export function loadCliConfig(env: NodeJS.ProcessEnv = process.env): CliConfig {
  const text = env.DATABASE_URL?.trim();
  if (text === undefined || text === '') {
    throw new CliError(ExitCode.usage,
      'DATABASE_URL is not set. The CLI reads and writes the database directly: set it to the proxy\'s database, '
      + 'e.g. DATABASE_URL=postgres://user:password@127.0.0.1:5432/metergate');
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CliError(ExitCode.usage, 'DATABASE_URL is not a URL: expected postgres://user:password@host:port/database');
  }
  if (!PROTOCOLS.has(url.protocol)) {
    throw new CliError(ExitCode.usage, `DATABASE_URL must start with postgres:// or postgresql://, not ${url.protocol}//`);
  }
  const port = url.port === '' ? '5432' : url.port;
  return Object.freeze({ databaseUrl: text, databaseLabel: `${url.hostname || 'localhost'}:${port}${url.pathname}` });
}

/**
 * The proxy's reconciler timings, when set in this environment, so `verify` judges "stuck in
 * flight" by the same lease as the replicas. Validated and defaulted by the proxy's own config.
 */
const PROXY_TIMING_VARS = ['REPLICA_LEASE_MS', 'HEARTBEAT_INTERVAL_MS', 'RECONCILE_INTERVAL_MS'] as const;

export function proxyTimingEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const name of PROXY_TIMING_VARS) {
    const value = env[name];
    if (value !== undefined) picked[name] = value;
  }
  return picked;
}
