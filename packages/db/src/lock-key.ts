import { createHash } from 'node:crypto';

/**
 * Namespace for cost-barrier advisory locks. Hashing the prefix with the user id keeps these
 * keys apart from any other single-bigint advisory locks an operator's database uses; the
 * migration lock uses Postgres's separate two-int4 key space, which never overlaps this one.
 */
export const COST_LOCK_NAMESPACE = 'metergate:cost-barrier:';

/** First 8 bytes of SHA-256(namespace ‖ userId), read as a signed big-endian int64. */
export function costLockKey(userId: string): bigint {
  const digest = createHash('sha256').update(COST_LOCK_NAMESPACE).update(userId, 'utf8').digest();
  return digest.readBigInt64BE(0);
}
