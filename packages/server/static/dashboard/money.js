// @ts-check
// Money in the dashboard: the API's exact decimal USD strings, summed as BigInt nano-USD, never
// floats. The same rules as @metergate/db's money.ts (formatNano; the API's 9-decimal text):
// that module imports node:assert and cannot load in a browser, so this small one stands in,
// and packages/server/tests/dashboard-money.test.ts checks the two agree.

export const NANO_PER_USD = 1000000000n;
const DECIMALS = 9;

/**
 * An API amount ("5.000000000", "-0.0000018") to nano-USD; anything else (missing, malformed,
 * more than 9 decimals) is null, so a caller decides rather than summing a silent 0.
 * @param {string} text
 * @returns {bigint | null}
 */
export function usdToNano(text) {
  const match = /^(-?)(\d+)(?:\.(\d{1,9}))?$/.exec(text);
  if (match === null) return null;
  const [, sign, whole = '0', fraction = ''] = match;
  const nano = BigInt(whole) * NANO_PER_USD + BigInt(fraction.padEnd(DECIMALS, '0'));
  return sign === '-' ? -nano : nano;
}

/**
 * nano-USD to a decimal string with all 9 digits: -1800n → "-0.000001800".
 * @param {bigint} nano
 * @returns {string}
 */
export function nanoToUsd(nano) {
  const negative = nano < 0n;
  const magnitude = negative ? -nano : nano;
  const fraction = (magnitude % NANO_PER_USD).toString().padStart(DECIMALS, '0');
  return (negative ? '-' : '') + (magnitude / NANO_PER_USD).toString() + '.' + fraction;
}
