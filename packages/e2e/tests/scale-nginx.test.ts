import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  balanceBreaches, chatCall, checkNginxConfig, eventually, findNginx, ledgerUsageNano, NGINX_CONF, renderNginxConfig,
  startNginx, startSimCluster, type Nginx, type SimCluster,
} from '@metergate/testkit';

// docker/nginx.conf itself, run by a real nginx in front of three replica processes.
const REPLICAS = 3;
const CONCURRENT = 60;
const CALLS_AFFORDED = 15;
const CALL = { latency_ms: 15, chunk_delay_ms: 2, completion_tokens: 8 };
const body = (sim: Record<string, number>) => ({ model: 'openai/gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'count to eight' }], sim });

QUnit.module('scale: nginx load balancer from docker/nginx.conf', (hooks) => {
  let f: SimCluster;
  let lb: Nginx;
  hooks.before(async () => {
    findNginx(); // fails with "run scripts/ci-deps.sh" when nginx is missing
    f = await startSimCluster({
      replicas: REPLICAS,
      env: { LOG_LEVEL: 'warn', BARRIER_QUEUE_DEPTH_MAX: '1000', BARRIER_QUEUE_WAIT_MS: '120000', LOCK_TIMEOUT_MS: '60000' },
    });
    lb = await startNginx(f.cluster.urls);
  });
  hooks.after(async () => {
    await lb?.stop();
    await f?.close();
  });

  QUnit.test('docker/nginx.conf passes `nginx -t` (replica host names swapped for 127.0.0.1)', async (assert) => {
    const template = await readFile(NGINX_CONF, 'utf8');
    // Only the upstream `server replicaN:8080` lines change: those names resolve only inside
    // the compose network, and nginx resolves upstream hosts while loading the config.
    const variant = renderNginxConfig(template, { upstreams: ['127.0.0.1:18081', '127.0.0.1:18082', '127.0.0.1:18083'] });
    const changed = variant.split('\n').filter((line) => !template.split('\n').includes(line));
    assert.deepEqual(changed.map((line) => line.trim().replace(/127\.0\.0\.1:\d+/, 'HOST')), Array(3).fill('server HOST max_fails=3 fail_timeout=10s;'), 'only the server lines differ');
    const dir = await mkdtemp(path.join(tmpdir(), 'mg-nginx-t-'));
    try {
      await writeFile(path.join(dir, 'nginx.conf'), variant);
      assert.strictEqual(checkNginxConfig(path.join(dir, 'nginx.conf'), dir), '', 'nginx -t -q printed nothing: the configuration is valid');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    for (const setting of ['proxy_buffering off;', 'proxy_http_version 1.1;', 'proxy_set_header Connection "";', 'proxy_read_timeout 3600s;', 'gzip off;']) {
      assert.true(new RegExp(`^\\s*${setting.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm').test(template), `SSE-safe: ${setting}`);
    }
    assert.false(/^\s*gzip_types[^;]*text\/event-stream/m.test(template), 'event streams are never compressed');
    assert.false(/^\s*proxy_next_upstream[^;]*non_idempotent/m.test(template), 'a POST is never re-sent to a second replica');
  });

  QUnit.test('a stream passes through nginx event by event, not buffered to the end', async (assert) => {
    assert.strictEqual((await fetch(`${lb.url}/healthz`)).status, 200, 'nginx reaches the replicas');
    assert.strictEqual((await fetch(`${lb.url}/metrics`)).status, 404, 'metrics are not published through the load balancer');
    // Neither by another spelling that nginx or Express might take for it.
    for (const bypass of ['/metrics/', '/METRICS', '/Metrics/', '/%6Detrics', '//metrics', '/./metrics', '/x/../metrics', '/metrics?x=1', '/metrics/x']) {
      const response = await fetch(`${lb.url}${bypass}`);
      const text = await response.text();
      assert.strictEqual(response.status, 404, `${bypass} through nginx`);
      assert.false(text.includes('metergate_'), `${bypass}: no metrics in the body`);
    }
    const key = await f.cluster.createUser('sse', 1_000_000_000n);
    // 20 tokens 100 ms apart: two seconds of stream.
    const result = await chatCall(lb.url, key, body({ latency_ms: 10, chunk_delay_ms: 100, completion_tokens: 20 }));
    assert.strictEqual(result.status, 200, result.body);
    assert.true(result.body.trimEnd().endsWith('data: [DONE]'));
    const firstMs = result.firstByteAtMs! - result.sentAtMs;
    const totalMs = result.endedAtMs - result.sentAtMs;
    assert.true(totalMs > 1_800, `the stream lasted ${totalMs.toFixed(0)} ms`);
    assert.true(firstMs < 1_000 && firstMs < totalMs - 1_000, `first bytes after ${firstMs.toFixed(0)} ms, long before the end at ${totalMs.toFixed(0)} ms`);
    assert.true(result.reads >= 10, `the body came in ${result.reads} reads`);
    await f.sim.whenIdle(10_000);
    const billed = f.sim.billedNano({ user: 'sse' });
    assert.strictEqual(await eventually(() => ledgerUsageNano(f.pool, 'sse'), (v) => v === billed), billed, 'billed exactly');
  });

  QUnit.test(`${CONCURRENT} concurrent calls of one user through nginx: serialized over all replicas, exact books`, async (assert) => {
    const probeKey = await f.cluster.createUser('probe', 1_000_000_000n);
    assert.strictEqual((await chatCall(lb.url, probeKey, body(CALL))).status, 200);
    await f.sim.whenIdle();
    const cost = f.sim.generations().find((g) => g.user === 'probe')!.costNano;
    const grant = cost * BigInt(CALLS_AFFORDED) - cost / 2n;
    const key = await f.cluster.createUser('lbbusy', grant);

    const results = await Promise.all(Array.from({ length: CONCURRENT }, () => chatCall(lb.url, key, body(CALL), { timeoutMs: 90_000 })));
    const statuses = results.map((r) => r.status);
    assert.strictEqual(statuses.filter((s) => s === 200).length, CALLS_AFFORDED, 'the balance admitted exactly the calls it covered');
    assert.strictEqual(statuses.filter((s) => s === 402).length, CONCURRENT - CALLS_AFFORDED, 'the rest were refused 402');
    await f.sim.whenIdle(10_000);
    const generations = f.sim.generations().filter((g) => g.user === 'lbbusy').sort((a, b) => a.startedAtMs - b.startedAtMs);
    const overlapping = generations.filter((g, i) => i > 0 && g.startedAtMs < (generations[i - 1]!.endedAtMs ?? Infinity));
    assert.deepEqual(overlapping.map((g) => g.id), [], 'strictly one at a time upstream');
    const billed = f.sim.billedNano({ user: 'lbbusy' });
    assert.strictEqual(await eventually(() => ledgerUsageNano(f.pool, 'lbbusy'), (v) => v === billed), billed, 'ledger = simulator books');
    const { rows: [user] } = await f.pool.query<{ balance: string }>(`select balance_nano::text as balance from users where id = 'lbbusy'`);
    assert.true(BigInt(user!.balance) >= -cost, `balance ${user!.balance} ≥ −${cost}`);
    assert.deepEqual(await balanceBreaches(f.pool), []);
    const { rows: served } = await f.pool.query<{ replica_id: string }>(`select distinct replica_id from requests where user_id = 'lbbusy'`);
    assert.true(served.length >= 2, `nginx spread the admitted calls over ${served.length} replicas`);
    const errors = (await lb.errorLog()).split('\n').filter((line) => /\[(error|crit|alert|emerg)\]/.test(line));
    assert.deepEqual(errors, [], 'nginx logged no errors');
  });
});
