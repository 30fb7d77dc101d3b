// Start-up and the price book: a replica joining a database whose price book already has prices
// takes traffic at once, even when the upstream hangs (its refresh runs in the background);
// only an empty book makes start-up wait for upstream /models.
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createLogger, loadConfig, startRuntime } from '@metergate/server';
import { startStack, type TestStack } from '@metergate/testkit';

QUnit.module('price book at start-up', (hooks) => {
  let stack: TestStack;
  let silent: Server;
  const sockets = new Set<Socket>();
  hooks.before(async () => {
    // Forces a refresh on every start: the book is always "stale".
    stack = await startStack({ env: { PRICE_REFRESH_MS: '1000' } });
    // An upstream that accepts connections and never answers.
    silent = createServer((socket) => { sockets.add(socket); });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  });
  hooks.after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
    await stack.close();
  });

  QUnit.test('a second replica on a priced book listens at once although upstream /models hangs', async (assert) => {
    assert.true(stack.runtime.services.priceBook.size > 0, 'the first replica loaded prices');
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // the book is now due for a refresh
    const { port } = silent.address() as AddressInfo;
    const config = loadConfig({
      NODE_ENV: 'test', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', DATABASE_URL: stack.db.url,
      OPENROUTER_BASE_URL: `http://127.0.0.1:${port}/api/v1`, OPENROUTER_API_KEY: 'sk-silent', ADMIN_TOKEN: stack.adminToken,
      UPSTREAM_TIMEOUT_MS: '20000', PRICE_REFRESH_MS: '1000',
    });
    const started = performance.now();
    const second = await startRuntime({
      config, log: createLogger(config.logLevel, config.replicaId), databaseUrl: stack.db.url, openRouterApiKey: 'sk-silent', adminToken: stack.adminToken,
    });
    const tookMs = performance.now() - started;
    try {
      assert.true(tookMs < 5_000, `listening after ${Math.round(tookMs)} ms, not after the 20 s upstream timeout`);
      assert.strictEqual(second.services.priceBook.size, stack.runtime.services.priceBook.size, 'with the shared prices');
    } finally {
      await second.close(1_000);
    }
  });
});
