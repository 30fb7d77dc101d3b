/**
 * Prices in the price book are exact integers in atto-USD (1e-18 USD) per unit. OpenRouter
 * quotes per-token prices as decimal strings that can be far below one nano-USD (a $0.02 per
 * million-token model is 2e-8 USD = 20 nano per token, but a discounted one can be 7.5e-10),
 * so nano-USD is too coarse; 18 decimals hold every price seen. Digits past the 18th decimal
 * round UP: a price is only ever used to bound a cost from above (holds), never to charge.
 */
import { CodedError } from './coded-error.js';

export const ATTO_PER_NANO = 1_000_000_000n;
export const ATTO_PER_USD = 1_000_000_000_000_000_000n;
const ATTO_DECIMALS = 18;
/** A price above this per unit (USD 1e6) is a typo or a sentinel, not a price. */
const ATTO_MAX = 1_000_000n * ATTO_PER_USD;
const PRICE_RE = /^(\d{1,20})(?:\.(\d{1,60}))?(?:[eE]([+-]?\d{1,3}))?$/;

export class PriceFormatError extends CodedError<'invalid_price'> {
  constructor(readonly input: unknown, reason: string) {
    super('invalid_price', `${reason}; got ${JSON.stringify(input)}`);
  }
}

/**
 * "0.00000015" → 150_000_000_000n atto-USD. Non-negative decimal text only (OpenRouter's "-1"
 * for "varies", as on openrouter/auto, is refused: that model has no price to hold with).
 */
export function usdPriceToAtto(text: string): bigint {
  const match = PRICE_RE.exec(text.trim());
  if (match === null) throw new PriceFormatError(text, 'a price is a non-negative decimal USD string such as "0.0000025"');
  const [, whole = '0', fraction = '', exponentText = '0'] = match;
  const digits = BigInt(whole + fraction);
  const shift = Number(exponentText) - fraction.length + ATTO_DECIMALS;
  const atto = shift >= 0 ? digits * 10n ** BigInt(shift) : ceilDiv(digits, 10n ** BigInt(-shift));
  if (atto > ATTO_MAX) throw new PriceFormatError(text, 'a price above 1,000,000 USD per unit is not a price');
  return atto;
}

/** Atto-USD to nano-USD, rounded up (a bound on a cost must not shrink when it is rounded). */
export function attoToNanoCeil(atto: bigint): bigint {
  return ceilDiv(atto, ATTO_PER_NANO);
}

/** 150_000_000_000n → "0.00000015" (shortest exact decimal text). */
export function formatAttoUsd(atto: bigint): string {
  const whole = atto / ATTO_PER_USD;
  const fraction = (atto % ATTO_PER_USD).toString().padStart(ATTO_DECIMALS, '0').replace(/0+$/, '');
  return fraction === '' ? whole.toString() : `${whole}.${fraction}`;
}

export function ceilDiv(dividend: bigint, divisor: bigint): bigint {
  if (dividend <= 0n) return dividend / divisor;
  return (dividend + divisor - 1n) / divisor;
}
