// A throwaway Postgres for tests and benchmarks: DATABASE_URL if set, else an embedded
// cluster in .test-data/ on a free port (it is deleted afterwards). Tests run it with
// durability off (nothing in it must survive a crash, and it is faster); benchmarks ask for
// `durable: true` so their figures include the cost of flushing every commit.
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { removeEmbeddedPostgres, startEmbeddedPostgres } from '@metergate/db';

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
  if (env.DATABASE_URL) return { url: env.DATABASE_URL, embedded: false, stop: async () => undefined };
  const dir = path.join(ROOT, '.test-data', `${name}-${process.pid}`);
  const handle = await startEmbeddedPostgres({
    dataDir: dir, port: await freePort(),
    settings: { ...(options.durable ? DURABLE : FAST_UNSAFE), max_connections: '500', ...options.settings },
  });
  return {
    url: handle.url, embedded: true,
    async stop() {
      await handle.stop();
      // Also root's copy of the cluster outside the checkout (see packages/db/src/embedded-layout.ts).
      await removeEmbeddedPostgres(dir);
    },
  };
}

