import type { SettleResult } from '../billing/settler.js';

export type ReconcileOutcome =
  | SettleResult
  | 'retry_later'
  | 'unresolved_exhausted'
  | 'unresolved_no_generation_id'
  | 'unresolved_settle_failed'
  | 'error';

export interface RetryPolicy {
  backoffMs: number;
  backoffMsMax: number;
  attemptsMax: number;
  ageMsMax: number;
}

/** Delay before the next lookup after `attempts` failed ones: base × 2^(attempts−1), capped. */
export function nextLookupDelayMs(attempts: number, policy: RetryPolicy): number {
  const exponent = Math.min(Math.max(attempts - 1, 0), 30);
  return Math.min(policy.backoffMs * 2 ** exponent, policy.backoffMsMax);
}

/** After a lookup that found nothing: try again later, or give up (explicitly). */
export function reconcileOutcome(request: { lookupAttempts: number; ageMs: number }, policy: RetryPolicy): 'retry_later' | 'unresolved_exhausted' {
  return request.lookupAttempts >= policy.attemptsMax || request.ageMs >= policy.ageMsMax ? 'unresolved_exhausted' : 'retry_later';
}
