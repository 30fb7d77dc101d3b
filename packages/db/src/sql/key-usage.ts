import type { Queryable } from './queryable.js';

export interface PeriodUsage {
  /** Charged nano-USD in the current UTC day, ISO week (from Monday) and month. */
  dayNano: bigint;
  weekNano: bigint;
  monthNano: bigint;
}

/**
 * A user's usage in the current UTC day, week and month, from the user rollups (one primary
 * key lookup each), for GET /v1/key. `at` is passed in so the periods are the caller's "now".
 */
export async function periodUsage(db: Queryable, userId: string, at: Date): Promise<PeriodUsage> {
  const result = await db.query<{ day: string; week: string; month: string }>(
    `select coalesce((select charged_nano from usage_user_daily
                       where user_id = $1::text and bucket = date_trunc('day', $2::timestamptz, 'UTC')), 0)::text as day,
            coalesce((select charged_nano from usage_user_weekly
                       where user_id = $1::text and bucket = date_trunc('week', $2::timestamptz, 'UTC')), 0)::text as week,
            coalesce((select charged_nano from usage_user_monthly
                       where user_id = $1::text and bucket = date_trunc('month', $2::timestamptz, 'UTC')), 0)::text as month`,
    [userId, at],
  );
  const row = result.rows[0]!;
  return { dayNano: BigInt(row.day), weekNano: BigInt(row.week), monthNano: BigInt(row.month) };
}
