// The operator dashboard at /admin/ in a real browser (Debian's Chromium driven by
// playwright-core) against a proxy whose database holds real metered calls: it must log in
// with the admin token and render the data the database holds. The static shell is public;
// every data call needs the token. A screenshot goes to artifacts/dashboard.png.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { formatNano, usdTextToNano } from '@metergate/db';
import { eventually, startStack, type TestStack } from '@metergate/testkit';

// The few browser globals the page callbacks below touch (this project compiles without the DOM lib).
declare const document: { getElementById(id: string): { textContent: string | null } | null };
declare const sessionStorage: { getItem(key: string): string | null };

const CHROMIUM_PATH = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SCREENSHOT = fileURLToPath(new URL('../../../../artifacts/dashboard.png', import.meta.url));
const BROWSER_WAIT_MS = 15_000;
const HTTP_TIMEOUT_MS = 15_000;
const LOW_THRESHOLD_USD = '1.00'; // the page's default "below USD" filter
const UNSETTLED = "('in_flight', 'awaiting_cost', 'unresolved')";

function chat(stack: TestStack, key: string, body: Record<string, unknown>): Promise<Response> {
  return fetch(`${stack.url}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: 'Tell me about meters.' }], ...body }),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
}

/** Users, grants and real metered calls through the proxy; two calls left without a cost. */
async function seed(stack: TestStack): Promise<void> {
  const top = await stack.createUser('dash-top', '10.00');
  const mid = await stack.createUser('dash-mid', '10.00');
  const low = await stack.createUser('dash-low', '0.40');
  await stack.createUser('dash-idle', '25.00');
  const calls: Array<[string, Record<string, unknown>]> = [
    [top, { model: 'openai/gpt-4o', sim: { completion_tokens: 400 } }],
    [top, { model: 'anthropic/claude-sonnet-4', stream: true, sim: { completion_tokens: 300 } }],
    [top, { model: 'openai/gpt-4o', sim: { completion_tokens: 250 } }],
    [mid, { model: 'openai/gpt-4o-mini', sim: { completion_tokens: 40 } }],
    [mid, { model: 'meta-llama/llama-3.1-8b-instruct', stream: true, sim: { completion_tokens: 30 } }],
    [low, { model: 'openai/gpt-4o-mini', sim: { completion_tokens: 20 } }],
  ];
  for (const [key, body] of calls) {
    const response = await chat(stack, key, body);
    if (response.status !== 200) throw new Error(`seed call: ${response.status} ${await response.text()}`);
    await response.arrayBuffer();
  }
  // No cost in the response and none at /generation for ten minutes: these stay unsettled.
  for (let i = 0; i < 2; i += 1) {
    const response = await chat(stack, mid, { model: 'openai/gpt-4o-mini', sim: { omit_usage: true, lookup_404_ms: 600_000 } });
    await response.arrayBuffer();
  }
}

async function scalar<T>(stack: TestStack, sql: string): Promise<T> {
  const result = await stack.db.pool.query<{ v: T }>(sql);
  return result.rows[0]!.v;
}

QUnit.module('dashboard', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => {
    // /metrics guarded: the live rate must come through with the dashboard's admin token.
    stack = await startStack({ env: { METRICS_TOKEN: 'dashboard-metrics-token-0123456789' } });
    await seed(stack);
  });
  hooks.after(async () => { await stack.close(); });

  QUnit.test('the HTML shell and its scripts are public and hold no data; the data API is not', async (assert) => {
    const shell = await fetch(`${stack.url}/admin/`);
    assert.strictEqual(shell.status, 200);
    assert.ok(shell.headers.get('content-type')?.startsWith('text/html'));
    assert.ok(shell.headers.get('content-security-policy')?.includes("script-src 'self'"), 'no inline or remote scripts');
    const html = await shell.text();
    assert.ok(html.includes('id="login-form"') && !html.includes('dash-top'), 'a login form, no data');
    const redirect = await fetch(`${stack.url}/admin`, { redirect: 'manual' });
    assert.strictEqual(redirect.status, 308);
    assert.strictEqual(redirect.headers.get('location'), '/admin/');
    const types: Record<string, string> = {
      'dashboard.js': 'text/javascript', 'money.js': 'text/javascript', 'dashboard.css': 'text/css',
      'uPlot.iife.min.js': 'text/javascript', 'uPlot.min.css': 'text/css',
    };
    for (const [asset, type] of Object.entries(types)) {
      const response = await fetch(`${stack.url}/admin/ui/${asset}`);
      assert.strictEqual(response.status, 200, asset);
      assert.ok(response.headers.get('content-type')?.startsWith(type), `${asset} is ${type}`);
      assert.strictEqual(response.headers.get('cache-control'), 'no-cache', `${asset} is revalidated`);
      assert.ok((await response.text()).length > 100, asset);
    }
    assert.strictEqual((await fetch(`${stack.url}/admin/ui/secret.txt`)).status, 404);
    // The folder's type-checking config sits beside the served files; it is not one of them.
    assert.strictEqual((await fetch(`${stack.url}/admin/ui/tsconfig.json`)).status, 404);
    for (const path of ['/admin/usage?group_by=user', '/admin/users', '/admin/requests?state=unsettled', '/admin/ledger', '/admin/users/dash-top']) {
      const anonymous = await fetch(`${stack.url}${path}`);
      assert.strictEqual(anonymous.status, 401, `${path} needs the token`);
    }
  });

  QUnit.test('in Chromium: token login, then spend chart, top users and models, low balances, unsettled count, live rps', async (assert) => {
    if (!existsSync(CHROMIUM_PATH)) {
      assert.ok(false, `no browser at ${CHROMIUM_PATH}: run \`bash scripts/ci-deps.sh\` (installs Debian's chromium package; \`npm test\` runs it first) and run the tests again`);
      return;
    }
    // What the page must show, read from the database itself (not from the API under test).
    const top = (await stack.db.pool.query<{ user_id: string; spent: string }>(
      `select user_id, (-sum(amount_nano))::text as spent from ledger_entries where kind = 'usage'
        group by user_id order by sum(amount_nano), user_id limit 1`)).rows[0]!;
    const topSpend = formatNano(BigInt(top.spent));
    const models = (await stack.db.pool.query<{ model: string }>(`select distinct model from ledger_entries where kind = 'usage'`)).rows.map((r) => r.model);
    const lowUsers = (await stack.db.pool.query<{ id: string }>('select id from users where balance_nano < $1::bigint order by id',
      [usdTextToNano(LOW_THRESHOLD_USD).toString()])).rows.map((r) => r.id);
    const unsettled = await eventually(() => scalar<number>(stack, `select count(*)::integer as v from requests where state in ${UNSETTLED}`), (n) => n === 2);
    assert.strictEqual(top.user_id, 'dash-top', 'the seed made dash-top the top spender');
    assert.deepEqual(lowUsers, ['dash-low'], 'the seed left only dash-low below the threshold');
    assert.strictEqual(unsettled, 2, 'the seed left two requests unsettled');

    // Controls (issue 13): a spend limit on dash-low and a webhook, shown by their panels.
    assert.strictEqual((await stack.admin('PUT', '/admin/users/dash-low/limits', { spend: [{ amount_usd: '2.50', period: 'day' }], requests_per_minute: 30 })).status, 200);
    assert.strictEqual((await stack.admin('POST', '/admin/webhooks', { url: 'http://127.0.0.1:9/dash-hook', secret: 'whsec-dashboard-0123456789', events: ['balance.low'] })).status, 201);

    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 30_000 });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
      page.setDefaultTimeout(BROWSER_WAIT_MS);
      const errors: string[] = [];
      page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()); });
      page.on('pageerror', (error) => { errors.push(error.message); });

      await page.goto(`${stack.url}/admin/`);
      await page.locator('#login-form').waitFor({ state: 'visible' });
      assert.ok(await page.locator('#dashboard').isHidden(), 'nothing but the login form before the token');
      await page.fill('#token', 'not-the-token');
      await page.click('#login-form button[type=submit]');
      await page.waitForFunction(() => (document.getElementById('login-error')?.textContent ?? '').includes('refused'));
      errors.length = 0; // the browser logs the refused request's 401 itself

      await page.fill('#token', stack.adminToken);
      await page.click('#login-form button[type=submit]');
      await page.waitForSelector('body[data-loaded="true"]');
      assert.strictEqual(await page.evaluate(() => sessionStorage.getItem('metergate.adminToken')), stack.adminToken);

      await checkPanels(assert, page, { topUser: top.user_id, topSpend, models, lowUser: 'dash-low', unsettled });
      await checkControls(assert, page);
      await checkDailyRange(assert, page);
      await checkLiveRps(assert, page, stack);

      await mkdir(fileURLToPath(new URL('.', `file://${SCREENSHOT}`)), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      assert.deepEqual(errors, [], 'no script errors and no CSP violations');

      await page.click('#logout');
      await page.locator('#login-form').waitFor({ state: 'visible' });
      assert.strictEqual(await page.evaluate(() => sessionStorage.getItem('metergate.adminToken')), null, 'log out forgets the token');
    } finally {
      await browser.close();
    }
  });
});

async function checkPanels(assert: Assert, page: Page, expected: { topUser: string; topSpend: string; models: string[]; lowUser: string; unsettled: number }): Promise<void> {
  const firstUser = await page.locator('#top-users tr').first().innerText();
  assert.ok(firstUser.includes(expected.topUser) && firstUser.includes(expected.topSpend), `top user row: ${firstUser}`);
  const modelsText = await page.locator('#top-models').innerText();
  for (const model of expected.models) assert.ok(modelsText.includes(model), `top models lists ${model}`);

  const canvas = await page.locator('#chart canvas').boundingBox();
  assert.ok(canvas !== null && canvas.width > 100 && canvas.height > 100, `the spend chart is drawn: ${JSON.stringify(canvas)}`);
  const charged = await page.locator('#spend-total').innerText();
  assert.ok(/^\d+\.\d{9}$/.test(charged) && usdTextToNano(charged) >= usdTextToNano(expected.topSpend), `spend total ${charged}`);

  const lowText = await page.locator('#low-balances').innerText();
  assert.ok(lowText.includes(expected.lowUser), `low balances: ${lowText}`);
  assert.notOk(lowText.includes('dash-idle') || lowText.includes(expected.topUser), 'only balances below the threshold');
  const lowCells = await page.locator('#low-balances tr').first().locator('td').allInnerTexts();
  assert.strictEqual(lowCells.length, 5, `user, balance, held, available, spend: ${JSON.stringify(lowCells)}`);
  assert.strictEqual(usdTextToNano(lowCells[3]!).toString(), (usdTextToNano(lowCells[1]!) - usdTextToNano(lowCells[2]!)).toString(), 'available = balance − held');

  assert.strictEqual(await page.locator('#unsettled-count').innerText(), String(expected.unsettled));
  assert.strictEqual(await page.locator('#unsettled tr').count(), expected.unsettled);
}

/** The limits of a user typed in, and the webhooks list. */
async function checkControls(assert: Assert, page: Page): Promise<void> {
  assert.ok((await page.locator('#webhooks').innerText()).includes('http://127.0.0.1:9/dash-hook'), 'the webhook is listed');
  await page.fill('#limits-user', 'dash-low');
  await page.dispatchEvent('#limits-user', 'change');
  await page.waitForFunction(() => (document.getElementById('limits-spend')?.textContent ?? '').includes('2.500000000'));
  const cells = await page.locator('#limits-spend tr').first().locator('td').allInnerTexts();
  assert.deepEqual(cells.slice(0, 2), ['day', '2.500000000'], `the daily limit: ${JSON.stringify(cells)}`);
  assert.ok((await page.locator('#limits-summary').innerText()).includes('requests/min: 30'), 'rate limit shown');
}

/** The 30-day range reads the daily summary: the same calls, so the same exact total. */
async function checkDailyRange(assert: Assert, page: Page): Promise<void> {
  const hourly = await page.locator('#spend-total').innerText();
  await page.selectOption('#range', 'day');
  await page.waitForFunction(() => (document.getElementById('spend-range')?.textContent ?? '').includes('30 days'));
  await page.waitForFunction(() => document.getElementById('spend-total')?.textContent !== '-');
  assert.strictEqual(await page.locator('#spend-total').innerText(), hourly, 'daily and hourly totals agree');
  await page.selectOption('#range', 'hour');
  await page.waitForFunction(() => (document.getElementById('spend-range')?.textContent ?? '').includes('24 hours'));
}

/** Chat traffic between two /metrics scrapes must show as a non-zero rate. */
async function checkLiveRps(assert: Assert, page: Page, stack: TestStack): Promise<void> {
  const key = await stack.createUser('dash-rps', '5.00');
  let seen = false;
  const traffic = (async () => {
    const until = Date.now() + BROWSER_WAIT_MS;
    while (!seen && Date.now() < until) {
      const response = await chat(stack, key, { model: 'openai/gpt-4o-mini', sim: { completion_tokens: 4 } });
      await response.arrayBuffer();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  try {
    await page.waitForFunction(() => Number(document.getElementById('rps-chat')?.textContent) > 0);
    seen = true;
  } finally {
    seen = true;
    await traffic;
  }
  assert.ok(Number(await page.locator('#rps-chat').innerText()) > 0, 'chat requests per second');
  const rpsCanvas = await page.locator('#rps-chart canvas').boundingBox();
  assert.ok(rpsCanvas !== null && rpsCanvas.width > 0 && rpsCanvas.height > 0, 'the live chart is drawn');
}
