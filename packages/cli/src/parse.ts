import { InvalidArgumentError } from 'commander';
import { usdTextToNano } from '@metergate/db';

/**
 * Option and argument parsers. Each either returns an exact value or throws commander's
 * InvalidArgumentError, which commander reports with the flag's name (exit code 2).
 */

/** Plain decimals with at most 9 places (nano-USD), as the admin API takes: nothing is rounded. */
const AMOUNT_RE = /^[+-]?\d{1,12}(\.\d{1,9})?$/;

export function amountNano(text: string): bigint {
  if (!AMOUNT_RE.test(text)) {
    throw new InvalidArgumentError(`expected a USD decimal with at most 9 decimals, such as "5.00" or "-0.25"; got ${JSON.stringify(text)}`);
  }
  return usdTextToNano(text);
}

export function positiveAmountNano(text: string): bigint {
  const nano = amountNano(text);
  if (nano <= 0n) throw new InvalidArgumentError(`a grant must be positive (use "credits adjust" to take credit away); got ${text}`);
  return nano;
}

export function nonZeroAmountNano(text: string): bigint {
  const nano = amountNano(text);
  if (nano === 0n) throw new InvalidArgumentError('an adjustment must not be zero');
  return nano;
}

export function balanceThresholdNano(text: string): bigint {
  return amountNano(text);
}

const RFC3339_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2}))?$/;

/** RFC 3339 (a date alone means midnight UTC); calendar-checked, so 2025-02-30 is refused. */
export function timestamp(text: string): Date {
  const match = RFC3339_RE.exec(text);
  const date = new Date(match !== null && match[4] === undefined ? `${text}T00:00:00Z` : text);
  if (match === null || Number.isNaN(date.getTime()) || !calendarValid(match)) {
    throw new InvalidArgumentError(`expected an RFC 3339 time such as 2025-06-01T00:00:00Z or a date 2025-06-01; got ${JSON.stringify(text)}`);
  }
  return date;
}

function calendarValid(match: RegExpExecArray): boolean {
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  const [hour, minute, second] = [Number(match[4] ?? 0), Number(match[5] ?? 0), Number(match[6] ?? 0)];
  return month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth && hour <= 23 && minute <= 59 && second <= 60;
}

/** A row limit: a whole number from 1 to `max`. */
export function limit(max: number): (text: string) => number {
  return (text: string) => {
    const value = /^\d{1,9}$/.test(text) ? Number(text) : Number.NaN;
    if (!Number.isSafeInteger(value) || value < 1 || value > max) {
      throw new InvalidArgumentError(`expected a whole number from 1 to ${max}; got ${JSON.stringify(text)}`);
    }
    return value;
  };
}

/** A ledger cursor: the id of the last entry of the previous page (printed as next_cursor). */
export function ledgerCursor(text: string): string {
  if (!/^\d{1,19}$/.test(text)) throw new InvalidArgumentError('expected a next_cursor value from a previous page');
  return text;
}

export function nonEmpty(what: string): (text: string) => string {
  return (text: string) => {
    if (text.trim() === '') throw new InvalidArgumentError(`${what} must not be empty`);
    return text;
  };
}
