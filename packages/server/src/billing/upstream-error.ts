import type { ServerResponse } from 'node:http';
import { MetergateError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { readBody } from '../upstream/read-body.js';
import type { UpstreamResponse } from '../upstream/openrouter.js';

const ERROR_BODY_BYTES_MAX = 64 * 1024;
/** The one 402 worth a retry: OpenRouter's in-flight spending budget on the operator's account. */
const IN_FLIGHT_BUDGET = 'openrouter_in_flight_budget';
/** Label values kept bounded: an upstream cannot grow the metric with arbitrary strings. */
const LIMIT_SOURCE_RE = /^[a-z0-9_]{1,64}$/;

/**
 * An upstream error before any output, relayed with OpenRouter's status and body, except two
 * that would mislead the client: 401 (the operator's key was refused, not the user's) becomes
 * our 502, and 402 (the operator's OpenRouter account, never the user's balance) our 503 with
 * Retry-After when it is the in-flight budget (it clears by itself) or otherwise our 502
 * `upstream_account_limit` (the operator's key limit or credits: only the operator can fix it,
 * so it is counted for alerting and not offered for retry).
 */
export async function relayUpstreamError(upstream: UpstreamResponse, res: ServerResponse, requestId: string, metrics: Metrics): Promise<string> {
  const body = await readBody(upstream.body, ERROR_BODY_BYTES_MAX).catch(() => Buffer.from(''));
  if (upstream.status === 401) {
    throw new MetergateError('upstream_auth_failed', 'the upstream provider refused the operator credentials');
  }
  if (upstream.status === 402) {
    const source = limitSource(body);
    if (source === IN_FLIGHT_BUDGET) {
      const retryAfterS = Number(upstream.headers['retry-after']) || 5;
      throw new MetergateError('upstream_busy', 'the upstream provider is temporarily out of budget; retry shortly', { retryAfterS });
    }
    metrics.upstreamAccountLimit.inc({ limit_source: source === null ? 'none' : LIMIT_SOURCE_RE.test(source) ? source : 'other' });
    throw new MetergateError('upstream_account_limit', "the service's upstream provider account has reached its spending limit (not your balance); retrying will not help until the operator raises it");
  }
  res.statusCode = upstream.status;
  const type = upstream.headers['content-type'];
  res.setHeader('content-type', typeof type === 'string' ? type : 'application/json');
  const retryAfter = upstream.headers['retry-after'];
  if (typeof retryAfter === 'string') res.setHeader('retry-after', retryAfter);
  res.setHeader('x-request-id', requestId);
  res.end(body);
  return `upstream_${upstream.status}`;
}

/** `error.metadata.limit_source` of OpenRouter's error body, or null (absent or not JSON). */
function limitSource(body: Buffer): string | null {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { error?: { metadata?: { limit_source?: unknown } } };
    const source = parsed.error?.metadata?.limit_source;
    return typeof source === 'string' ? source : null;
  } catch {
    return null;
  }
}
