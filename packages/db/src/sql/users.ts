import { parseNano } from '../money.js';
import { sqlState, SqlState } from '../pg-errors.js';
import type { Queryable } from './queryable.js';

export interface UserRow {
  id: string;
  createdAt: Date;
  balanceNano: bigint;
  creditsNano: bigint;
  usageNano: bigint;
  /** Holds of calls whose cost is not known yet; available = balance − held. */
  heldNano: bigint;
}

interface RawUser { id: string; created_at: Date; balance_nano: string; credits_nano: string; usage_nano: string; held_nano: string }

const USER_COLUMNS = 'id, created_at, balance_nano, credits_nano, usage_nano, held_nano';

function toUser(row: RawUser): UserRow {
  return {
    id: row.id,
    createdAt: row.created_at,
    balanceNano: parseNano(row.balance_nano),
    creditsNano: parseNano(row.credits_nano),
    usageNano: parseNano(row.usage_nano),
    heldNano: parseNano(row.held_nano),
  };
}

/** Returns null when the id is taken. */
export async function insertUser(db: Queryable, id: string): Promise<UserRow | null> {
  try {
    const result = await db.query<RawUser>(`insert into users (id) values ($1::text) returning ${USER_COLUMNS}`, [id]);
    return toUser(result.rows[0]!);
  } catch (error) {
    if (sqlState(error) === SqlState.uniqueViolation) return null;
    throw error;
  }
}

export async function getUser(db: Queryable, id: string): Promise<UserRow | null> {
  const result = await db.query<RawUser>(`select ${USER_COLUMNS} from users where id = $1::text`, [id]);
  const row = result.rows[0];
  return row === undefined ? null : toUser(row);
}

/** The admission read inside the cost barrier: O(1) from the running total. */
export async function readBalance(db: Queryable, id: string): Promise<bigint | null> {
  const result = await db.query<{ balance_nano: string }>('select balance_nano from users where id = $1::text', [id]);
  const row = result.rows[0];
  return row === undefined ? null : parseNano(row.balance_nano);
}
