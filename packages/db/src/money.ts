/**
 * Money is integer nano-USD (1 USD = 1e9 nano) held in `bigint`, never a JS float.
 *
 * OpenRouter reports cost as a JSON number in USD. We convert it exactly once, here, from the
 * number's shortest round-trip decimal text (what `String(n)` prints): any decimal with at
 * most 15 significant digits survives JSON → double → String unchanged, which covers every
 * cost below 1e6 USD written with 9 decimals. Rounding rule for digits past the 9th decimal:
 * round half away from zero. It is the only rounding in the system.
 */
import assert from 'node:assert/strict';
import { CodedError } from './coded-error.js';

export const NANO_PER_USD = 1_000_000_000n;
const DECIMALS = 9;
const DECIMAL_RE = /^([+-]?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

export class MoneyFormatError extends CodedError<'invalid_money'> {
  constructor(readonly input: string) {
    super('invalid_money', `not a decimal USD amount: ${JSON.stringify(input)}`);
  }
}

/** Exact decimal text in USD (e.g. "5.00", "-0.0000018", "4.5e-7") to nano-USD. */
export function usdTextToNano(text: string): bigint {
  return decimalToNano(text, TEXT_EXPONENT_MAX);
}

/** Typed amounts: an exponent beyond ±40 is a typo, not money. */
const TEXT_EXPONENT_MAX = 40;
/** A double's decimal exponent is within ±324 (5e-324 … 1.8e308). */
const NUMBER_EXPONENT_MAX = 400;
/** Below this a number rounds to 0 nano under the rule above (half a nano is 5e-10). */
const NUMBER_ZERO_BELOW_USD = 1e-10;

function decimalToNano(text: string, exponentMax: number): bigint {
  const match = DECIMAL_RE.exec(text.trim());
  if (match === null) throw new MoneyFormatError(text);
  const [, sign = '', whole = '0', fraction = '', exponentText = '0'] = match;
  const exponent = Number(exponentText);
  if (!Number.isSafeInteger(exponent) || Math.abs(exponent) > exponentMax) {
    throw new MoneyFormatError(text);
  }
  // digits × 10^(exponent − fraction.length) USD, scaled to nano.
  const digits = BigInt(whole + fraction);
  const shift = exponent - fraction.length + DECIMALS;
  const magnitude = shift >= 0 ? digits * 10n ** BigInt(shift) : divRoundHalfUp(digits, 10n ** BigInt(-shift));
  return sign === '-' ? -magnitude : magnitude;
}

/**
 * A JSON number of USD (OpenRouter's `usage.cost`) to nano-USD; see the rounding rule above.
 * Total over every finite double: 1e-41 and 5e-324 round to 0, 1e300 is an exact (huge)
 * bigint. Whether such an amount may be charged is the caller's decision, not this one's.
 */
export function usdNumberToNano(usd: number): bigint {
  if (!Number.isFinite(usd)) throw new MoneyFormatError(String(usd));
  if (Math.abs(usd) < NUMBER_ZERO_BELOW_USD) return 0n;
  return decimalToNano(String(usd), NUMBER_EXPONENT_MAX);
}

/** nano-USD to a decimal string with all 9 stored digits: -1800n → "-0.000001800". */
export function formatNano(nano: bigint): string {
  const negative = nano < 0n;
  const magnitude = negative ? -nano : nano;
  const whole = magnitude / NANO_PER_USD;
  const fraction = (magnitude % NANO_PER_USD).toString().padStart(DECIMALS, '0');
  return `${negative ? '-' : ''}${whole}.${fraction}`;
}

/**
 * nano-USD to a JSON number, only for the OpenRouter-compatible endpoints that answer
 * numbers. Goes through the decimal text so the double is the one nearest the exact value.
 */
export function nanoToUsdNumber(nano: bigint): number {
  return Number(formatNano(nano));
}

/** Postgres bigint arrives as text from node-postgres; parse it without a float. */
export function parseNano(value: string | bigint | number | null): bigint {
  assert(value !== null, 'a money column must not be null here');
  if (typeof value === 'bigint') return value;
  assert(typeof value === 'string' || Number.isSafeInteger(value), 'money must be integral');
  return BigInt(value);
}

function divRoundHalfUp(dividend: bigint, divisor: bigint): bigint {
  const quotient = dividend / divisor;
  const remainder = dividend % divisor;
  return remainder * 2n >= divisor ? quotient + 1n : quotient;
}
