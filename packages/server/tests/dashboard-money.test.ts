// The dashboard's browser-side money module (static/dashboard/money.js) against the server's
// own rules in @metergate/db: the browser cannot load money.ts (it imports node:assert), so the
// small copy must agree with it on every amount the admin API can send.
import { fileURLToPath } from 'node:url';
import { formatNano, usdTextToNano } from '@metergate/db';

interface BrowserMoney {
  usdToNano(text: string): bigint | null;
  nanoToUsd(nano: bigint): string;
}

const MONEY_JS = fileURLToPath(new URL('../../static/dashboard/money.js', import.meta.url));

async function browserMoney(): Promise<BrowserMoney> {
  return (await import(MONEY_JS)) as BrowserMoney;
}

const NANOS = [0n, 1n, -1n, 999_999_999n, 1_000_000_000n, -1_800n, 123_456_789_012n, -5_000_000_001n, 10n ** 21n + 7n];

QUnit.module('dashboard money.js', () => {
  QUnit.test('formats every amount as formatNano does and parses it back exactly', async (assert) => {
    const money = await browserMoney();
    for (const nano of NANOS) {
      const text = money.nanoToUsd(nano);
      assert.strictEqual(text, formatNano(nano), `${nano} formats alike`);
      assert.strictEqual(money.usdToNano(text), nano, `${text} parses back`);
      assert.strictEqual(money.usdToNano(text), usdTextToNano(text), `${text} parses as the server does`);
    }
  });

  QUnit.test('parses the shorter decimals the API and the operator type, and refuses the rest', async (assert) => {
    const money = await browserMoney();
    for (const text of ['5', '5.0', '-0.0000018', '1.25', '0.000000001']) {
      assert.strictEqual(money.usdToNano(text), usdTextToNano(text), text);
    }
    for (const text of ['', '1.0000000001', '1e-7', '+1', ' 1', 'abc', '1.']) {
      assert.strictEqual(money.usdToNano(text), null, `${JSON.stringify(text)} is not an API amount`);
    }
  });
});
