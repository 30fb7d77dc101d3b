// Money is integer nano-USD (1e-9 USD) in bigint everywhere in the books; floats only appear
// at the wire, where OpenRouter itself uses JSON numbers (usage.cost) or decimal strings.

const NANO_PER_USD = 1_000_000_000n;
const NANO_DIGITS = 9;

/** Exact decimal USD string for a nano-USD amount: 2500n → "0.0000025", 0n → "0". */
export function formatUsd(nano: bigint): string {
  const sign = nano < 0n ? '-' : '';
  const abs = nano < 0n ? -nano : nano;
  const whole = abs / NANO_PER_USD;
  const fraction = abs % NANO_PER_USD;
  if (fraction === 0n) return `${sign}${whole}`;
  const digits = fraction.toString().padStart(NANO_DIGITS, '0').replace(/0+$/, '');
  return `${sign}${whole}.${digits}`;
}

/**
 * USD as a JSON number, the way OpenRouter sends `usage.cost`.
 * Exact by construction for |nano| < 1e15: Number(nano) is exact (< 2^53), the division is
 * correctly rounded, and any decimal with at most 15 significant digits survives a round trip
 * through a double. JSON.stringify prints the shortest string that round-trips, which is
 * therefore the exact decimal nano/1e9; a reader parsing that text as a decimal (or doing
 * Math.round(cost * 1e9)) recovers the nano amount exactly.
 */
export function usdNumber(nano: bigint): number {
  return Number(nano) / 1e9;
}
