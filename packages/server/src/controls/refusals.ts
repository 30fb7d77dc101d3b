import { formatNano, type Refusal } from '@metergate/db';
import { MetergateError } from '../errors.js';
import type { Services } from '../services.js';

/**
 * A limit's refusal from the admission statement as the client's error: 402
 * `spend_limit_reached` naming the limit and when it resets, 429 `rate_limit_exceeded` /
 * `too_many_concurrent_calls` with Retry-After and X-RateLimit-Limit/-Remaining/-Reset
 * (Reset: unix seconds when the window ends). Null for insufficient credits, which each mode
 * words itself.
 */
export function limitError(services: Services, refusal: Refusal): MetergateError | null {
  if (refusal.kind === 'insufficient_credits') return null;
  services.metrics.admissions.inc({ mode: services.config.barrierMode, outcome: `${refusal.kind}_${refusal.scope}` });
  const who = refusal.scope === 'user' ? 'user' : 'API key';
  if (refusal.kind === 'spend_limit') {
    const period = refusal.period === 'never' ? 'lifetime' : `${refusal.period}ly`.replace('dayly', 'daily');
    const resets = refusal.resetsAt === null ? 'it does not reset' : `it resets at ${refusal.resetsAt.toISOString()}`;
    return new MetergateError('spend_limit_reached',
      `spend limit reached: the ${who}'s ${period} limit of ${formatNano(refusal.amountNano)} USD (spent ${formatNano(refusal.spentNano)} USD this period, ${formatNano(refusal.heldNano)} USD held by calls in progress) leaves no room for this call; ${resets}`,
      { param: `${refusal.scope}.spend.${refusal.period}`, headers: refusal.resetsAt === null ? {} : { 'x-spend-limit-reset': refusal.resetsAt.toISOString() } });
  }
  if (refusal.kind === 'requests_per_minute') {
    const resetS = Math.ceil(refusal.resetsAt.getTime() / 1000);
    const nowMs = services.clock()?.getTime() ?? Date.now();
    const retryAfterS = Math.max(1, Math.ceil((refusal.resetsAt.getTime() - nowMs) / 1000));
    return new MetergateError('rate_limit_exceeded',
      `rate limit reached: the ${who} may start ${refusal.limit} calls per minute (UTC minute windows); retry after ${retryAfterS} s`,
      { retryAfterS, headers: rateHeaders(refusal.limit, resetS) });
  }
  const nowS = Math.ceil((services.clock()?.getTime() ?? Date.now()) / 1000);
  return new MetergateError('too_many_concurrent_calls',
    `too many concurrent calls: the ${who} may have ${refusal.limit} calls open at once (calls whose cost is not known yet count); retry when one finishes`,
    { retryAfterS: 1, headers: rateHeaders(refusal.limit, nowS + 1) });
}

function rateHeaders(limit: number, resetS: number): Record<string, string> {
  return { 'x-ratelimit-limit': String(limit), 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(resetS) };
}
