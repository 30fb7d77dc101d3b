import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { removeEmbeddedPostgres, startEmbeddedPostgres, type EmbeddedPostgresHandle } from '@metergate/db';
import { freePort } from './cluster.js';
import { REPO_ROOT } from './replica.js';

export interface EmbeddedCluster {
  /** The cluster's `postgres` database; stays valid across stop/start (same port, same password). */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  readonly running: boolean;
  /** Fast shutdown (SIGINT to the postmaster): sessions are terminated, as in a real restart. */
  stop(): Promise<void>;
  /** Starts the same cluster again on the same port. */
  start(): Promise<void>;
  /** Stops it and deletes its data directory. */
  destroy(): Promise<void>;
}

/**
 * A Postgres cluster of a test's own, separate from the suite's shared one, so the test may
 * stop and restart it. Data lives under the repository's git-ignored .test-data/ (as root, the
 * cluster itself lives where the `postgres` user can reach it: packages/db/src/embedded-layout.ts).
 */
export async function startEmbeddedCluster(settings: Record<string, string> = {}): Promise<EmbeddedCluster> {
  const dataDir = path.join(REPO_ROOT, '.test-data', `cluster-${process.pid}-${randomBytes(4).toString('hex')}`);
  const port = await freePort();
  const allSettings = { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '200', ...settings };
  const launch = () => startEmbeddedPostgres({ dataDir, port, settings: allSettings });
  let handle: EmbeddedPostgresHandle | null = await launch();
  if (!handle.owned) throw new Error(`port ${port} already serves a Postgres; refusing to share it`);
  const url = handle.url;
  return {
    url, port, dataDir,
    get running() { return handle !== null; },
    async stop() {
      const current = handle;
      handle = null;
      await current?.stop();
    },
    async start() {
      if (handle !== null) return;
      handle = await launch();
    },
    async destroy() {
      const current = handle;
      handle = null;
      try {
        await current?.stop();
      } finally {
        await removeEmbeddedPostgres(dataDir);
      }
    },
  };
}
