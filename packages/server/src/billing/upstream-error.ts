import type { ServerResponse } from 'node:http';
import { MetergateError } from '../errors.js';
import { readBody } from '../upstream/read-body.js';
import type { UpstreamResponse } from '../upstream/openrouter.js';

const ERROR_BODY_BYTES_MAX = 64 * 1024;

/**
 * An upstream error before any output, relayed with OpenRouter's status and body, except two
 * that would mislead the client: 401 (the operator's key was refused, not the user's) and 402
 * (the operator's OpenRouter account or in-flight budget, not the user's balance) become our
 * 502 / 503 with Retry-After.
 */
export async function relayUpstreamError(upstream: UpstreamResponse, res: ServerResponse, requestId: string): Promise<string> {
  const body = await readBody(upstream.body, ERROR_BODY_BYTES_MAX).catch(() => Buffer.from(''));
  if (upstream.status === 401) {
    throw new MetergateError('upstream_auth_failed', 'the upstream provider refused the operator credentials');
  }
  if (upstream.status === 402) {
    const retryAfterS = Number(upstream.headers['retry-after']) || 5;
    throw new MetergateError('upstream_busy', 'the upstream provider is temporarily out of budget; retry shortly', { retryAfterS });
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
