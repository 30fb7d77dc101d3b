import {
  formatNano, MoneyFormatError, NANO_PER_USD, nanoToUsdNumber, parseNano, usdNumberToNano, usdTextToNano,
} from '@metergate/db';
import { prng, randomBigint } from './helpers.js';

QUnit.module('money', () => {
  QUnit.test('usdTextToNano converts plain and exponent decimal text exactly', (assert) => {
    const cases: Array<[string, bigint]> = [
      ['0', 0n], ['5', 5n * NANO_PER_USD], ['5.00', 5_000_000_000n], ['0.000000001', 1n],
      ['-0.0000018', -1_800n], ['+1.5', 1_500_000_000n], ['7.5e-7', 750n], ['7.5E-7', 750n],
      ['4.5e-7', 450n], ['1e-9', 1n], ['1e+21', 10n ** 30n], ['12e3', 12_000n * NANO_PER_USD],
      ['-2.5e-9', -3n], ['0.123456789', 123_456_789n], ['  0.25  ', 250_000_000n],
      ['9223372036.854775807', 9_223_372_036_854_775_807n],
    ];
    for (const [text, nano] of cases) assert.strictEqual(usdTextToNano(text), nano, text);
  });

  QUnit.test('digits past the 9th decimal round half away from zero, symmetric in sign', (assert) => {
    const cases: Array<[string, bigint]> = [
      ['0.0000000015', 2n], ['0.00000000149999', 1n], ['0.0000000025', 3n], ['0.0000000005', 1n],
      ['0.0000000004999999', 0n], ['1.0000000009', 1_000_000_001n], ['5e-10', 1n], ['4.9e-10', 0n],
      ['0.0000000014', 1n], ['0.0000000016', 2n],
    ];
    for (const [text, nano] of cases) {
      assert.strictEqual(usdTextToNano(text), nano, text);
      assert.strictEqual(usdTextToNano(`-${text}`), -nano, `-${text}`);
    }
    // The same rule through the JSON-number path (String(n) gives exponent forms here).
    assert.strictEqual(usdNumberToNano(5e-10), 1n);
    assert.strictEqual(usdNumberToNano(-5e-10), -1n);
    assert.strictEqual(usdNumberToNano(1.5e-9), 2n);
    assert.strictEqual(usdNumberToNano(-1.5e-9), -2n);
    assert.strictEqual(usdNumberToNano(-0), 0n);
  });

  QUnit.test('usdNumberToNano is exact for typical OpenRouter costs', (assert) => {
    assert.strictEqual(usdNumberToNano(7.5e-7), 750n);
    assert.strictEqual(usdNumberToNano(0.000123), 123_000n);
    assert.strictEqual(usdNumberToNano(0.1 + 0.2), 300_000_000n, '0.30000000000000004 rounds to 0.3');
    assert.strictEqual(usdNumberToNano(0.0000018), 1_800n);
    assert.strictEqual(usdNumberToNano(123456.123456789), 123_456_123_456_789n);
    assert.strictEqual(usdNumberToNano(1e21), 10n ** 30n);
  });

  QUnit.test('usdNumberToNano never throws on a finite number: tiny ones round to 0, huge ones are exact', (assert) => {
    // 1e-41 and 5e-324 once threw (exponent past 40) and left the request in flight.
    for (const tiny of [1e-41, 5e-324, -5e-324, 1e-300, 4.9e-10, Number.MIN_VALUE]) {
      assert.strictEqual(usdNumberToNano(tiny).toString(), '0', String(tiny));
    }
    assert.strictEqual(usdNumberToNano(1e-10).toString(), '0');
    assert.strictEqual(usdNumberToNano(5e-10).toString(), '1', 'half a nano still rounds away from zero');
    assert.strictEqual(usdNumberToNano(1e300).toString(), `1${'0'.repeat(309)}`);
    assert.strictEqual(usdNumberToNano(Number.MAX_VALUE).toString(), `17976931348623157${'0'.repeat(301)}`);
    assert.throws(() => usdNumberToNano(Number.POSITIVE_INFINITY), MoneyFormatError);
    assert.throws(() => usdNumberToNano(Number.NaN), MoneyFormatError);
    assert.throws(() => usdTextToNano('1e-41'), MoneyFormatError, 'typed text keeps its exponent limit');
  });

  QUnit.test('formatNano prints all 9 digits and the sign', (assert) => {
    const cases: Array<[bigint, string]> = [
      [0n, '0.000000000'], [1n, '0.000000001'], [-1_800n, '-0.000001800'], [5_000_000_000n, '5.000000000'],
      [-5_000_000_001n, '-5.000000001'], [123_456_789n, '0.123456789'],
      [9_223_372_036_854_775_807n, '9223372036.854775807'], [-9_223_372_036_854_775_808n, '-9223372036.854775808'],
    ];
    for (const [nano, text] of cases) {
      assert.strictEqual(formatNano(nano), text, String(nano));
      assert.strictEqual(usdTextToNano(text), nano, `${text} parses back`);
    }
  });

  QUnit.test('Number(k)/1e9 round-trips exactly for many random k < 1e15 (seeded)', (assert) => {
    const random = prng(0x6d67);
    const bound = 10n ** 15n;
    const failures: string[] = [];
    const samples = [0n, 1n, 9n, 10n, 999_999_999n, 1_000_000_000n, bound - 1n];
    for (let i = 0; i < 20_000; i += 1) samples.push(randomBigint(random, bound));
    // Small magnitudes too, where String() switches to exponent notation.
    for (let i = 0; i < 2_000; i += 1) samples.push(randomBigint(random, 10_000n));
    for (const k of samples) {
      for (const signed of [k, -k]) {
        const usd = Number(signed) / 1e9;
        if (usdNumberToNano(usd) !== signed) failures.push(`usdNumberToNano(${usd}) != ${signed}`);
        if (nanoToUsdNumber(signed) !== usd) failures.push(`nanoToUsdNumber(${signed}) != ${usd}`);
        if (usdTextToNano(formatNano(signed)) !== signed) failures.push(`format/parse ${signed}`);
      }
    }
    assert.deepEqual(failures.slice(0, 5), [], `${failures.length} failures of ${samples.length * 2}`);
  });

  QUnit.test('garbage is rejected with MoneyFormatError', (assert) => {
    const garbage = ['', ' ', 'abc', '1.2.3', '1,5', '.5', '5.', '--1', '+-1', '1e', 'e5', '0x10', '1_000',
      '1e999', '1e-41', 'NaN', 'Infinity', '5 USD', '$5', '1 2'];
    for (const text of garbage) {
      assert.throws(() => usdTextToNano(text), MoneyFormatError, JSON.stringify(text));
    }
    for (const value of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      assert.throws(() => usdNumberToNano(value), MoneyFormatError, String(value));
    }
    const error = (() => { try { usdTextToNano('nope'); } catch (e) { return e; } return null; })();
    assert.true(error instanceof MoneyFormatError && error.input === 'nope', 'the error carries the input');
  });

  QUnit.test('parseNano accepts bigint text and refuses non-integral or null values', (assert) => {
    assert.strictEqual(parseNano('-9223372036854775808'), -9_223_372_036_854_775_808n);
    assert.strictEqual(parseNano(42n), 42n);
    assert.strictEqual(parseNano(7), 7n);
    assert.throws(() => parseNano(null));
    assert.throws(() => parseNano(1.5));
    assert.throws(() => parseNano(2 ** 60));
  });
});
