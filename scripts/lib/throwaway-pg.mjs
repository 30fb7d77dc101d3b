// A throwaway Postgres for tests and benchmarks: DATABASE_URL if set, else an embedded
// cluster in .test-data/ on a free port, with durability off (it is deleted afterwards).
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

export async function startThrowawayPostgres(name, env = process.env) {
  if (env.DATABASE_URL) return { url: env.DATABASE_URL, embedded: false, stop: async () => undefined };
  const dir = path.join(ROOT, '.test-data', `${name}-${process.pid}`);
  const handle = await startEmbeddedPostgres({
    dataDir: dir, port: await freePort(),
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '500' },
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
