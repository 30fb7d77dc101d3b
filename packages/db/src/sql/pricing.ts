/**
 * Resale pricing: what a user is charged is the upstream cost times a multiplier, held as an
 * integer in parts per million (1_000_000 = ×1.0) so the arithmetic is exact. The settle
 * statement (ledger.ts) applies it: charged = ceil(upstream × ppm / 1_000_000), rounded up to
 * the next nano-USD. A global default (one row, read by every replica in the settle statement
 * itself) and an optional per-user override.
 */
import assert from 'node:assert/strict';
import { CodedError } from '../coded-error.js';
import { parseNano } from '../money.js';
import type { Queryable } from './queryable.js';

export const PPM_PER_UNIT = 1_000_000n;
/** ×1000 at most (the column checks say the same): a typo such as "1250" is refused, not charged. */
export const MULTIPLIER_PPM_MAX = 1_000_000_000n;

const MULTIPLIER_RE = /^(\d{1,4})(?:\.(\d{1,6}))?$/;

export class MultiplierFormatError extends CodedError<'invalid_multiplier'> {
  constructor(readonly input: string, reason: string) {
    super('invalid_multiplier', `${reason}; got ${JSON.stringify(input)}`);
  }
}

/** "1.25" → 1_250_000n: a plain decimal, at most 6 decimals, > 0 and ≤ 1000. Exact, no float. */
export function parseMultiplier(text: string): bigint {
  const match = MULTIPLIER_RE.exec(text.trim());
  if (match === null) throw new MultiplierFormatError(text, 'a multiplier is a plain decimal with at most 6 decimals, such as "1.25"');
  const [, whole = '0', fraction = ''] = match;
  const ppm = BigInt(whole) * PPM_PER_UNIT + BigInt(fraction.padEnd(6, '0'));
  if (ppm <= 0n) throw new MultiplierFormatError(text, 'a multiplier must be greater than zero');
  if (ppm > MULTIPLIER_PPM_MAX) throw new MultiplierFormatError(text, 'a multiplier must be at most 1000');
  return ppm;
}

/** 1_250_000n → "1.250000" (all six stored decimals, as amounts show all nine). */
export function formatMultiplier(ppm: bigint): string {
  assert(ppm >= 0n, 'a multiplier is never negative');
  return `${ppm / PPM_PER_UNIT}.${(ppm % PPM_PER_UNIT).toString().padStart(6, '0')}`;
}

/** The pricing rule in TypeScript, for tests and previews: ceil(upstream × ppm / 1e6). */
export function chargeFor(upstreamNano: bigint, ppm: bigint): bigint {
  assert(upstreamNano >= 0n && ppm > 0n, 'cost and multiplier must be non-negative and positive');
  return (upstreamNano * ppm + PPM_PER_UNIT - 1n) / PPM_PER_UNIT;
}

function checkPpm(ppm: bigint): void {
  assert(ppm > 0n && ppm <= MULTIPLIER_PPM_MAX, `multiplier ppm out of range: ${ppm}`);
}

export async function setDefaultMultiplier(db: Queryable, ppm: bigint): Promise<void> {
  checkPpm(ppm);
  await db.query('update pricing_settings set default_multiplier_ppm = $1::bigint, updated_at = now()', [ppm.toString()]);
}

/** Sets (or with null clears) a user's override. False when there is no such user. */
export async function setUserMultiplier(db: Queryable, userId: string, ppm: bigint | null): Promise<boolean> {
  if (ppm !== null) checkPpm(ppm);
  const result = await db.query('update users set multiplier_ppm = $2::bigint where id = $1::text', [userId, ppm?.toString() ?? null]);
  return result.rowCount === 1;
}

export interface Pricing { defaultPpm: bigint; userPpm: bigint | null; effectivePpm: bigint; updatedAt: Date }

/**
 * The default, and with a user id that user's override and the multiplier a settle would
 * apply now. Throws nothing for an unknown user: see userExists for the 404.
 */
export async function getPricing(db: Queryable, userId?: string): Promise<Pricing & { userExists: boolean }> {
  const result = await db.query<{ default_ppm: string; user_ppm: string | null; updated_at: Date; user_exists: boolean }>(
    `select s.default_multiplier_ppm as default_ppm, u.multiplier_ppm as user_ppm, s.updated_at,
            u.id is not null as user_exists
       from pricing_settings s
       left join users u on u.id = $1::text`,
    [userId ?? null],
  );
  const row = result.rows[0];
  assert(row !== undefined, 'pricing_settings has its one row (migration 0003)');
  const defaultPpm = parseNano(row.default_ppm);
  const userPpm = row.user_ppm === null ? null : parseNano(row.user_ppm);
  return { defaultPpm, userPpm, effectivePpm: userPpm ?? defaultPpm, updatedAt: row.updated_at, userExists: row.user_exists };
}
