/** UTC periods of the usage rollups: the bucket boundaries every rollup table is keyed by. */

export type Period = 'month' | 'week' | 'day' | 'hour';

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const WEEK_MS = 7 * DAY_MS;
/** 1970-01-05 (a Monday): ISO weeks start on Monday, as date_trunc('week', t, 'UTC') does. */
const FIRST_MONDAY_MS = 4 * DAY_MS;

/** The start of the UTC period containing `at`. */
export function floorTo(period: Period, at: Date): Date {
  if (period === 'month') return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1));
  if (period === 'week') return new Date(Math.floor((at.getTime() - FIRST_MONDAY_MS) / WEEK_MS) * WEEK_MS + FIRST_MONDAY_MS);
  const unit = period === 'day' ? DAY_MS : HOUR_MS;
  return new Date(Math.floor(at.getTime() / unit) * unit);
}

/** `at` itself if a period starts there, else the start of the next period. */
export function ceilTo(period: Period, at: Date): Date {
  const floor = floorTo(period, at);
  if (floor.getTime() === at.getTime()) return floor;
  return nextPeriod(period, floor);
}

/** The start of the period after the one starting at `start`. */
export function nextPeriod(period: Period, start: Date): Date {
  if (period === 'month') return new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1));
  const unit = period === 'week' ? WEEK_MS : period === 'day' ? DAY_MS : HOUR_MS;
  return new Date(start.getTime() + unit);
}

/** The starts of the periods that [since, until) touches, oldest first (at most `countMax + 1` are listed). */
export function periodsCovering(period: Period, since: Date, until: Date, countMax: number): Date[] {
  const starts: Date[] = [];
  for (let at = floorTo(period, since); at < until && starts.length <= countMax; at = nextPeriod(period, at)) starts.push(at);
  return starts;
}
