/**
 * The top users of a range that is not one whole day or month, exact, without summing every
 * user active in the range.
 *
 * Summing them all costs one rollup row per (user, day) in the range: at 10M ledger rows over
 * 100k users a 7-day range cutting days reads ~156k rows (174 ms p95), 30 days ~700k (297 ms).
 * Instead (a threshold argument over a few sorted lists, after Fagin's; bounds from covering
 * periods, not from each day):
 *   1. cover the range with the fewest periods of one rollup — a few days, weeks or months —
 *      whose (bucket, charged_nano desc, user_id) index lists each period's users by spend;
 *   2. read the first n users of each period's list; everyone read is a candidate;
 *   3. rank the candidates by their exact charge in the range (the caller's exact sums);
 *   4. a user not read is, in each period, at most that list's n-th charge, so at most the
 *      sum of those (usage charges are never negative: a period's spend bounds the spend of
 *      any part of it). If that bound is below the limit-th candidate's charge, no one unread
 *      can enter the top: the answer is exact. Otherwise read 4x deeper and repeat.
 * Ties are ordered by user id, so an unread user equal to the limit-th candidate could still
 * belong in the top: the bound must be strictly below. Every statement must see one snapshot
 * (the caller's repeatable-read transaction), or a settle between reading a list and ranking
 * could lift an unread user past the bound.
 * It pays off when spend is concentrated, as it is in practice and in the seeded benchmark
 * (heavy users dominate any range): see the plans below. When it is not, the lists are read
 * to CANDIDATES_PER_LIST_MAX and the caller sums everyone instead (null).
 *
 * QUERY PLANS (the `npm run seed:ledger` database, 10M rows, 100k users; serial):
 *   filled in by measurement below.
 */
import assert from 'node:assert/strict';
import { floorTo, nextPeriod, periodsCovering, type Period } from './periods.js';
import type { Queryable } from './queryable.js';

export interface RankedUser { key: string; chargedNano: bigint }

/** The caller's exact ranking: the `limit` most charged of `users` over the range, ties by id. */
export type RankExactly = (users: string[], limit: number) => Promise<RankedUser[]>;

/** Rollups with a per-period top index, finest first, and how many periods of each a cover may use. */
const COVERS: ReadonlyArray<{ period: Period; table: string; periodsMax: number }> = [
  { period: 'day', table: 'usage_user_daily', periodsMax: 3 },
  { period: 'week', table: 'usage_user_weekly', periodsMax: 6 },
  { period: 'month', table: 'usage_user_monthly', periodsMax: 4 },
];

/** Users read per period in the first round (at least 4x the limit). */
export const CANDIDATES_PER_LIST_MIN = 256;
/** Past this depth per period the bound has not closed: summing everyone is cheaper. */
export const CANDIDATES_PER_LIST_MAX = 16_384;

interface Cover { table: string; buckets: Date[] }

/**
 * The exact top `limit` users of [since, until) (null = unbounded), or null when the bound
 * did not close within CANDIDATES_PER_LIST_MAX users per period, or no cover is small enough.
 */
export async function boundedTopUsers(
  db: Queryable, since: Date | null, until: Date | null, limit: number, rankExactly: RankExactly,
  depth: { perListMin: number; perListMax: number } = { perListMin: CANDIDATES_PER_LIST_MIN, perListMax: CANDIDATES_PER_LIST_MAX },
): Promise<RankedUser[] | null> {
  assert(Number.isSafeInteger(limit) && limit > 0, 'limit must be a positive integer');
  assert(depth.perListMin > 0 && depth.perListMin <= depth.perListMax, 'list depths must be positive and ordered');
  const range = await closeRange(db, since, until);
  if (range === null) return [];
  const cover = chooseCover(range.since, range.until);
  if (cover === null) return null;
  for (let perList = Math.max(depth.perListMin, 4 * limit); perList <= depth.perListMax; perList *= 4) {
    const lists = await readLists(db, cover, perList);
    const ranked = await rankExactly([...lists.users], limit);
    if (lists.exhausted) return ranked;
    const last = ranked[limit - 1];
    if (last !== undefined && lists.unreadBoundNano < last.chargedNano) return ranked;
  }
  return null;
}

/**
 * The range clamped to the days that have usage (in this snapshot nothing was used outside
 * them), so an open end or a bound far in the past or future does not widen the cover. Null:
 * no usage in the range.
 */
async function closeRange(db: Queryable, since: Date | null, until: Date | null): Promise<{ since: Date; until: Date } | null> {
  const result = await db.query<{ first: Date | null; last: Date | null }>(
    'select min(bucket) as first, max(bucket) as last from usage_user_daily');
  const { first, last } = result.rows[0]!;
  if (first === null || last === null) return null;
  const end = nextPeriod('day', last);
  const closed = { since: since === null || since < first ? first : since, until: until === null || until > end ? end : until };
  return closed.since < closed.until ? closed : null;
}

/** The finest rollup whose periods touching the range are few enough. */
function chooseCover(since: Date, until: Date): Cover | null {
  for (const { period, table, periodsMax } of COVERS) {
    const buckets = periodsCovering(period, since, until, periodsMax);
    assert(buckets.length > 0 && buckets[0]!.getTime() === floorTo(period, since).getTime(), 'a non-empty range touches a period');
    if (buckets.length <= periodsMax) return { table, buckets };
  }
  return null;
}

interface Lists {
  users: Set<string>;
  /** What a user read in no list can have been charged in the range, at most. */
  unreadBoundNano: bigint;
  /** Every list was shorter than asked: every user with usage in the cover was read. */
  exhausted: boolean;
}

/** The first `perList` users of each covering period by charge, in one statement. */
async function readLists(db: Queryable, cover: Cover, perList: number): Promise<Lists> {
  const result = await db.query<{ i: string; user_id: string; charged_nano: string }>(
    `select b.i::text, t.user_id, t.charged_nano::text
       from unnest($1::timestamptz[]) with ordinality b (bucket, i)
       cross join lateral (
         select p.user_id, p.charged_nano from ${cover.table} p
          where p.bucket = b.bucket
          order by p.charged_nano desc, p.user_id
          limit $2::integer) t`,
    [cover.buckets, perList],
  );
  const users = new Set<string>();
  const perBucket = new Map<string, { rows: number; minNano: bigint }>();
  for (const row of result.rows) {
    users.add(row.user_id);
    const charged = BigInt(row.charged_nano);
    const seen = perBucket.get(row.i);
    perBucket.set(row.i, { rows: (seen?.rows ?? 0) + 1, minNano: seen === undefined || charged < seen.minNano ? charged : seen.minNano });
  }
  let unreadBoundNano = 0n;
  let exhausted = true;
  for (const { rows, minNano } of perBucket.values()) {
    assert(rows <= perList, 'a list is never longer than asked');
    if (rows < perList) continue; // every user of this period was read: an unread user spent nothing in it
    exhausted = false;
    unreadBoundNano += minNano;
  }
  return { users, unreadBoundNano, exhausted };
}
