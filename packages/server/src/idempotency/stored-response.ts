import type { ServerResponse } from 'node:http';
import type { StoredResponse } from '@metergate/db';
import { MetergateError } from '../errors.js';
import type { Recording } from './recorder.js';

/**
 * The response a retry replays. A stream is kept byte for byte when it fits and completed on
 * its own terms; otherwise (too large, or cut short by the client leaving) as an equivalent
 * completed stream: one content chunk per choice, the finish, the usage, [DONE].
 */
export function toStoredResponse(recording: Recording): StoredResponse {
  const { status, headers, bytes, summary } = recording;
  if (summary === null) {
    return bytes === null ? tooLargeToKeep() : { status, headers, body: bytes };
  }
  if (bytes !== null && summary.complete) return { status, headers, body: bytes };
  if (summary.overflow) return tooLargeToKeep();
  return { status, headers, body: summary.toSse() };
}

function tooLargeToKeep(): StoredResponse {
  const error = new MetergateError('internal_error',
    'the response to the first request with this Idempotency-Key was too large to keep for replay; it was delivered and billed once');
  return errorResponse(500, error);
}

/**
 * What a retry gets when the replica running the first attempt died after calling the
 * upstream: the call may have been charged (the reconciler settles it), so it is not run again.
 */
export function interruptedResponse(): StoredResponse {
  const error = new MetergateError('internal_error',
    'the first request with this Idempotency-Key was interrupted (its server stopped, or could not record its result) after reaching the upstream, ' +
    'so it may have been charged; its cost, if any, was billed; send a new Idempotency-Key to try again');
  return errorResponse(500, error);
}

/**
 * What a retry gets when the first attempt failed after the upstream may have started the
 * generation (a broken body, a connection lost after sending): the same status and code the
 * first client got, saying why it is not run again.
 */
export function failedAfterUpstreamResponse(error: MetergateError): StoredResponse {
  const kept = new MetergateError(error.code,
    `${error.message}; the first request with this Idempotency-Key was sent upstream, which may have started the ` +
    'generation, so it may have been charged (its cost, if any, is billed) and is not run again; ' +
    'send a new Idempotency-Key to try again');
  return errorResponse(kept.status, kept);
}

function errorResponse(status: number, error: MetergateError): StoredResponse {
  return { status, headers: { 'content-type': 'application/json; charset=utf-8' }, body: Buffer.from(JSON.stringify(error.toBody())) };
}

/** Sends a stored response as the answer to a retry, marked as a replay (as Stripe does). */
export function replay(res: ServerResponse, stored: StoredResponse, originalRequestId: string): void {
  res.statusCode = stored.status;
  for (const [name, value] of Object.entries(stored.headers)) res.setHeader(name, value);
  res.setHeader('idempotent-replayed', 'true');
  res.setHeader('x-original-request-id', originalRequestId);
  res.end(stored.body);
}
