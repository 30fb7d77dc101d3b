/**
 * The users list: sorted by balance, spend or id, keyset-paged on the sort indexes.
 *
 * QUERY PLAN relied on (the `npm run seed:ledger` database, 100k users; Postgres 17):
 * Users, balance below X: Index Scan using users_balance, Index Cond balance_nano < X 0.02 ms
 */
import assert from 'node:assert/strict';
import { parseNano } from '../../money.js';
import { Params } from '../params.js';
import type { Queryable } from '../queryable.js';
import type { UserRow } from '../users.js';
import { ReportQueryError } from './errors.js';

export interface UserListRow extends UserRow {
  /** Total charged for usage, all time (= usageNano). */
  spendNano: bigint;
  /** The user's price multiplier override (ppm), null = the default. */
  multiplierPpm: bigint | null;
}

export interface UserListQuery {
  sort: 'balance' | 'spend' | 'id';
  order: 'asc' | 'desc';
  /** Only users whose balance is strictly below this. */
  balanceBelowNano?: bigint | null;
  limit: number;
  /** nextCursor of the previous page (same sort and order). */
  cursor?: string | null;
}

const USER_SORT_COLUMN = { balance: 'balance_nano', spend: 'usage_nano', id: null } as const;

interface RawUserRow { id: string; created_at: Date; balance_nano: string; credits_nano: string; usage_nano: string; held_nano: string; multiplier_ppm: string | null }

/** Cursor = base64url JSON [sort value, id]: keyset on (value, id), which the sort indexes hold. */
function encodeUserCursor(sort: UserListQuery['sort'], row: RawUserRow): string {
  const column = USER_SORT_COLUMN[sort];
  const value = column === null ? null : row[column];
  return Buffer.from(JSON.stringify([sort, value, row.id])).toString('base64url');
}

/** The users.id check constraint (migration 0001). */
const CURSOR_USER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$/;

function decodeUserCursor(sort: UserListQuery['sort'], cursor: string): { value: string | null; id: string } {
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    decoded = null;
  }
  if (!Array.isArray(decoded) || decoded.length !== 3) throw new ReportQueryError('cursor', 'cursor must be a next_cursor value from a previous page');
  const [cursorSort, value, id] = decoded as unknown[];
  const validValue = value === null || (typeof value === 'string' && /^-?\d{1,19}$/.test(value));
  // The id goes to Postgres as text: it must be a user id (no NUL, nothing a user id cannot be).
  if (typeof id !== 'string' || !CURSOR_USER_ID_RE.test(id) || !validValue) throw new ReportQueryError('cursor', 'cursor must be a next_cursor value from a previous page');
  if (cursorSort !== sort || (USER_SORT_COLUMN[sort] === null) !== (value === null)) {
    throw new ReportQueryError('cursor', `this cursor belongs to a listing sorted by ${String(cursorSort)}, not ${sort}`);
  }
  return { value: value as string | null, id };
}

export async function listUsers(db: Queryable, q: UserListQuery): Promise<{ users: UserListRow[]; nextCursor: string | null }> {
  assert(Number.isSafeInteger(q.limit) && q.limit > 0, 'limit must be a positive integer');
  const params = new Params();
  const column = USER_SORT_COLUMN[q.sort];
  const direction = q.order === 'asc' ? 'asc' : 'desc';
  const where: string[] = [];
  if (q.balanceBelowNano != null) where.push(`balance_nano < ${params.add(q.balanceBelowNano.toString(), 'bigint')}`);
  if (q.cursor != null) {
    const after = decodeUserCursor(q.sort, q.cursor);
    const op = direction === 'asc' ? '>' : '<';
    where.push(column === null ? `id ${op} ${params.add(after.id, 'text')}`
      : `(${column}, id) ${op} (${params.add(after.value, 'bigint')}, ${params.add(after.id, 'text')})`);
  }
  const order = column === null ? `id ${direction}` : `${column} ${direction}, id ${direction}`;
  const result = await db.query<RawUserRow>(
    `select id, created_at, balance_nano, credits_nano, usage_nano, held_nano, multiplier_ppm from users
      ${where.length > 0 ? `where ${where.join(' and ')}` : ''}
      order by ${order} limit ${params.add(q.limit + 1, 'integer')}`,
    params.values,
  );
  const rows = result.rows.slice(0, q.limit);
  const last = rows.at(-1);
  return {
    users: rows.map(toUserListRow),
    nextCursor: result.rows.length > q.limit && last !== undefined ? encodeUserCursor(q.sort, last) : null,
  };
}

function toUserListRow(row: RawUserRow): UserListRow {
  const usageNano = parseNano(row.usage_nano);
  return {
    id: row.id, createdAt: row.created_at, balanceNano: parseNano(row.balance_nano), creditsNano: parseNano(row.credits_nano), heldNano: parseNano(row.held_nano),
    usageNano, spendNano: usageNano, multiplierPpm: row.multiplier_ppm === null ? null : parseNano(row.multiplier_ppm),
  };
}
