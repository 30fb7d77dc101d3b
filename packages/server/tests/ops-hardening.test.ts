// The operations endpoints under a hostile client: exact paths only (Express would otherwise
// answer /metrics/ and /METRICS, which nginx's exact block let through), an optional
// METRICS_TOKEN, and scrapes or readiness probes that cost the database nothing per call.
import { startStack, type TestStack } from '@metergate/testkit';
import { loadConfig } from '@metergate/server';
import { assertOpenAiError, chat, messages, readSse } from './helpers.js';

const BYPASSES = ['/metrics/', '/METRICS', '/Metrics', '/metrics//', '/READYZ', '/readyz/', '/HEALTHZ'];

/** Counts every query and checkout on the replica's write pool from now on. */
function countWritePool(stack: TestStack): { count: () => number; restore: () => void } {
  const pool = stack.runtime.services.pools.write;
  const query = pool.query.bind(pool);
  const connect = pool.connect.bind(pool);
  let calls = 0;
  pool.query = ((...args: Parameters<typeof query>) => { calls += 1; return query(...args); }) as typeof pool.query;
  pool.connect = ((...args: Parameters<typeof connect>) => { calls += 1; return connect(...args); }) as typeof pool.connect;
  return { count: () => calls, restore: () => { pool.query = query; pool.connect = connect; } };
}

function gauge(text: string, sample: string): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? null : Number(line.slice(line.lastIndexOf(' ') + 1));
}

QUnit.module('ops hardening: exact paths, no query per scrape', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => {
    stack = await startStack({
      // Background work kept out of the counted windows: beats, passes and refreshes are rare.
      env: { HEARTBEAT_INTERVAL_MS: '60000', REPLICA_LEASE_MS: '120000', RECONCILE_INTERVAL_MS: '600000', METRICS_REFRESH_MS: '200' },
    });
  });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('only the exact, lower-case paths answer: /metrics/ and /METRICS are 404', async (assert) => {
    for (const path of ['/metrics', '/readyz', '/healthz']) assert.strictEqual((await fetch(`${stack.url}${path}`)).status, 200, path);
    for (const path of BYPASSES) {
      const response = await fetch(`${stack.url}${path}`);
      const text = await response.text();
      assert.strictEqual(response.status, 404, `${path}: ${text.slice(0, 80)}`);
      assert.false(text.includes('metergate_'), `${path}: no metrics in the body`);
    }
  });

  QUnit.test('scrapes and readiness probes run no query on the write pool per call', async (assert) => {
    await fetch(`${stack.url}/readyz`);
    const counter = countWritePool(stack);
    try {
      for (let i = 0; i < 25; i += 1) {
        assert.strictEqual((await fetch(`${stack.url}/metrics`)).status, 200);
        assert.strictEqual((await fetch(`${stack.url}/readyz`)).status, 200);
      }
      // The gauges' timer (every 200 ms here) and at most a readiness refresh per second may
      // run meanwhile; 50 calls that each queried would be 75 or more.
      assert.true(counter.count() <= 12, `${counter.count()} write-pool queries for 50 calls`);
    } finally {
      counter.restore();
    }
  });

  QUnit.test('the unsettled gauges are refreshed in the background and show a call in flight', async (assert) => {
    const key = await stack.createUser('gauge-user');
    const response = await chat(stack, key, { model: 'openai/gpt-4o', stream: true, messages: messages(), sim: { latency_ms: 2_000 } });
    assert.strictEqual(response.status, 200);
    let seen: number | null = null;
    const until = Date.now() + 1_800;
    while (Date.now() < until && seen !== 1) {
      seen = gauge(await (await fetch(`${stack.url}/metrics`)).text(), 'metergate_unsettled_requests{state="in_flight"}');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.strictEqual(seen, 1, 'the running call shows as in_flight');
    await readSse(response);
    let after: number | null = 1;
    const later = Date.now() + 3_000;
    while (Date.now() < later && after !== null && after !== 0) {
      after = gauge(await (await fetch(`${stack.url}/metrics`)).text(), 'metergate_unsettled_requests{state="in_flight"}');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.true(after === null || after === 0, `settled: in_flight gauge ${after}`);
  });
});

QUnit.module('ops hardening: METRICS_TOKEN', (hooks) => {
  const metricsToken = 'metrics-token-0123456789abcdef';
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack({ env: { METRICS_TOKEN: metricsToken } }); });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('with METRICS_TOKEN set, /metrics needs it (or the admin token) as a Bearer token', async (assert) => {
    const get = (token?: string) => fetch(`${stack.url}/metrics`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
    await assertOpenAiError(assert, await get(), 401, 'invalid_api_key');
    await assertOpenAiError(assert, await get('wrong-token-0123456789abcdef'), 401, 'invalid_api_key');
    await assertOpenAiError(assert, await get(`${metricsToken}x`), 401, 'invalid_api_key');
    const ok = await get(metricsToken);
    assert.strictEqual(ok.status, 200);
    assert.true((await ok.text()).includes('metergate_http_requests_total'));
    assert.strictEqual((await get(stack.adminToken)).status, 200, 'the dashboard scrapes with the admin token');
    assert.strictEqual((await fetch(`${stack.url}/healthz`)).status, 200, 'health stays open');
    assert.strictEqual((await fetch(`${stack.url}/readyz`)).status, 200, 'readiness stays open');
  });

  QUnit.test('METRICS_TOKEN and METRICS_REFRESH_MS are validated', (assert) => {
    assert.throws(() => loadConfig({ METRICS_TOKEN: 'short' }), /METRICS_TOKEN/);
    assert.throws(() => loadConfig({ METRICS_REFRESH_MS: '5' }), /METRICS_REFRESH_MS/);
    assert.strictEqual(loadConfig({}).metricsToken, null, 'unset: /metrics open as before');
    assert.strictEqual(loadConfig({ METRICS_TOKEN: metricsToken }).metricsToken, metricsToken);
  });
});
