// Operations and the OpenRouter-compatible reads: health, readiness (and draining), metrics,
// /v1/credits in OpenRouter's shape, /v1/models relayed and cached.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatNano } from '@metergate/db';
import { ledgerUsageNano, startStack, type TestStack } from '@metergate/testkit';
import { assertBooks, assertOpenAiError, chat, messages, operatorKey, readSse } from './helpers.js';

const METRICS_SOURCE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/metrics.ts');

/** Every metric name declared in packages/server/src/metrics.ts. */
async function declaredMetricNames(): Promise<string[]> {
  const source = await readFile(METRICS_SOURCE, 'utf8');
  return [...source.matchAll(/name: '(metergate_[a-z_]+)'/g)].map((match) => match[1]!);
}

function sampleValue(text: string, name: string): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? null : Number(line.slice(line.lastIndexOf(' ') + 1));
}

QUnit.module('ops', (hooks) => {
  let stack: TestStack;
  let key: string;
  hooks.before(async () => {
    stack = await startStack();
    key = await stack.createUser('ops-user', '3.25');
  });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('/healthz and /readyz answer 200; /readyz 503 and chat refused while draining', async (assert) => {
    const health = await fetch(`${stack.url}/healthz`);
    assert.strictEqual(health.status, 200);
    assert.strictEqual((await health.json() as { status: string }).status, 'ok');
    assert.true(health.headers.get('x-request-id') !== null, 'request id header');
    const ready = await fetch(`${stack.url}/readyz`);
    assert.strictEqual(ready.status, 200, await ready.clone().text());
    const lifecycle = stack.runtime.services.lifecycle;
    lifecycle.draining = true;
    try {
      assert.strictEqual((await fetch(`${stack.url}/readyz`)).status, 503, 'not ready while draining');
      assert.strictEqual((await fetch(`${stack.url}/healthz`)).status, 200, 'still alive while draining');
      const refused = await chat(stack, key, { model: 'openai/gpt-4o', messages: messages() });
      assert.strictEqual(refused.headers.get('retry-after'), '1');
      await assertOpenAiError(assert, refused, 503, 'draining');
    } finally {
      lifecycle.draining = false;
    }
    assert.strictEqual((await fetch(`${stack.url}/readyz`)).status, 200, 'ready again');
  });

  QUnit.test('/metrics exposes every declared metric; cost recorded equals the ledger', async (assert) => {
    const names = await declaredMetricNames();
    assert.true(names.length >= 15, `${names.length} metric names declared`);
    const models = ['openai/gpt-4o', 'perplexity/sonar', 'meta-llama/llama-3.1-8b-instruct'];
    for (const [index, model] of models.entries()) {
      const response = await chat(stack, key, { model, stream: index % 2 === 0, messages: messages() });
      assert.strictEqual(response.status, 200);
      if (index % 2 === 0) await readSse(response); else await response.text();
    }
    const looked = await chat(stack, key, { model: 'openai/gpt-4o', messages: messages(), sim: { omit_usage: true } });
    await looked.text();
    await assertBooks(assert, stack, 'ops-user');
    const response = await fetch(`${stack.url}/metrics`);
    assert.strictEqual(response.status, 200);
    assert.true((response.headers.get('content-type') ?? '').startsWith('text/plain'), 'Prometheus text format');
    const text = await response.text();
    for (const name of names) assert.true(text.includes(`# TYPE ${name} `), `${name} exported`);
    const ledgerNano = await ledgerUsageNano(stack.db.pool);
    assert.true(ledgerNano > 0n);
    assert.strictEqual(sampleValue(text, 'metergate_cost_recorded_nano_total'), Number(ledgerNano), 'cost recorded = Σ usage in the ledger');
    assert.strictEqual(sampleValue(text, 'metergate_charged_nano_total'), Number(ledgerNano), 'charged = Σ usage in the ledger');
    assert.true(/metergate_http_requests_total\{route="\/v1\/chat\/completions",method="POST",status="200"\} \d+/.test(text), 'requests by route and status');
    assert.true(/metergate_cost_lookups_total\{outcome="found"\} 1/.test(text), 'the lookup is counted');
    assert.true(/metergate_upstream_ttfb_seconds_count\{stream="true"\} [1-9]/.test(text), 'time to first byte observed');
    assert.true(/metergate_lock_wait_seconds_count [1-9]/.test(text), 'lock waits observed');
    assert.false(text.includes(operatorKey(stack)), 'no operator key in metrics');
  });

  QUnit.test("GET /v1/credits answers OpenRouter's shape with USD numbers for the caller", async (assert) => {
    await assertBooks(assert, stack, 'ops-user');
    const usageNano = await ledgerUsageNano(stack.db.pool, 'ops-user');
    for (const base of ['/v1', '/api/v1']) {
      const response = await fetch(`${stack.url}${base}/credits`, { headers: { authorization: `Bearer ${key}` } });
      assert.strictEqual(response.status, 200);
      const body = await response.json() as { data: { total_credits: number; total_usage: number; total_held: number; available: number } };
      assert.deepEqual(Object.keys(body), ['data']);
      assert.deepEqual(Object.keys(body.data).sort(), ['available', 'total_credits', 'total_held', 'total_usage'], "OpenRouter's two fields, plus holds and what is available");
      assert.strictEqual(body.data.total_held, 0, 'nothing held once every call settled');
      assert.strictEqual(body.data.available, Number(formatNano(3_250_000_000n - usageNano)), 'available = balance − held');
      assert.strictEqual(body.data.total_credits, 3.25);
      assert.strictEqual(typeof body.data.total_usage, 'number');
      assert.strictEqual(body.data.total_usage, Number(formatNano(usageNano)), 'usage as the nearest double');
    }
    const other = await stack.createUser('ops-other', '1.5');
    const mine = await (await fetch(`${stack.url}/v1/credits`, { headers: { authorization: `Bearer ${other}` } })).json();
    assert.deepEqual(mine, { data: { total_credits: 1.5, total_usage: 0, total_held: 0, available: 1.5 } }, 'each caller sees its own');
  });

  QUnit.test("GET /v1/models relays the upstream's list and caches it", async (assert) => {
    const modelCalls = () => stack.sim.requestLog.filter((entry) => entry.path.endsWith('/models')).length;
    const before = modelCalls();
    const direct = await (await fetch(`${stack.sim.url}/models`, { headers: { authorization: `Bearer ${operatorKey(stack)}` } })).text();
    assert.strictEqual(modelCalls(), before + 1);
    const first = await fetch(`${stack.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    assert.strictEqual(first.status, 200);
    assert.true((first.headers.get('content-type') ?? '').startsWith('application/json'));
    assert.strictEqual(await first.text(), direct, 'the list as the upstream sent it');
    assert.strictEqual(modelCalls(), before + 2, 'one upstream call');
    const parsed = JSON.parse(direct) as { data: Array<{ id: string; pricing: { prompt: string } }> };
    assert.true(parsed.data.some((m) => m.id === 'perplexity/sonar'));
    const again = await Promise.all(['/v1/models', '/api/v1/models', '/v1/models'].map(async (p) =>
      (await fetch(`${stack.url}${p}`, { headers: { authorization: `Bearer ${key}` } })).text()));
    assert.true(again.every((text) => text === direct), 'cached copies are the same list');
    assert.strictEqual(modelCalls(), before + 2, 'served from the cache: no further upstream call');
  });
});
