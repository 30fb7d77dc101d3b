import type { ServerResponse } from 'node:http';
import { idempotency, type IdempotencyRow, type StoredResponse } from '@metergate/db';
import { MetergateError } from '../errors.js';
import { upstreamMayHaveBilled } from '../billing/upstream-started.js';
import { toMetergateError } from '../http/error-handler.js';
import type { Services } from '../services.js';
import { bodyHash } from './key-header.js';
import { ResponseRecorder, type Recording } from './recorder.js';
import { failedAfterUpstreamResponse, replay, toStoredResponse } from './stored-response.js';

export interface KeyedCall {
  readonly userId: string;
  readonly key: string;
  /** The Metergate request id of this attempt (requests.id if it runs). */
  readonly requestId: string;
  readonly body: unknown;
  readonly stream: boolean;
  /**
   * The stream is chat-shaped, so a cut or oversized one can be replayed as an equivalent
   * completed stream (StreamSummary). Other endpoints' streams are replayed only byte for byte.
   */
  readonly chatShapedStream?: boolean;
}

// A claim can lose to a row that is deleted (released) before it can be read; try again.
const CLAIM_ROUNDS_MAX = 3;

/**
 * Runs a chat completion under an Idempotency-Key (Stripe's semantics, per user):
 * - the first request with a key claims it (one INSERT ... ON CONFLICT DO NOTHING, before the
 *   cost barrier), runs, and stores its response for replay;
 * - a retry with the same body replays it, without calling upstream or charging;
 * - the same key while the first still runs → 409; with another body → 422;
 * - an attempt that ends with an error before any output (nothing was charged: 4xx, 5xx, 402)
 *   releases the key, so a retry runs again; but one that failed after the upstream may have
 *   started the generation keeps it, answered "may have been charged" (never run twice).
 */
export async function withIdempotency(services: Services, call: KeyedCall, res: ServerResponse,
  run: (recorder: ResponseRecorder) => Promise<void>): Promise<void> {
  const hash = bodyHash(call.body);
  const existing = await claim(services, call, hash);
  if (existing !== null) {
    answerExisting(services, existing, hash, res);
    return;
  }
  const owner = { userId: call.userId, key: call.key, requestId: call.requestId };
  let charged: StoredResponse | null = null;
  const recorder = new ResponseRecorder(res, {
    streamBytesMax: services.config.idempotencyStreamBytesMax, bodyBytesMax: services.config.upstreamBodyBytesMax,
    summarizeStreams: call.chatShapedStream !== false,
  }, (recording) => finishLogged(services, owner, recording, charged));
  try {
    await run(recorder);
  } catch (error) {
    // Mid-response: what was sent may have been charged, so it is what a retry gets. Before
    // any output, the error handler's answer passes through end() and releases the key,
    // unless the upstream may have started the generation: then that is what is kept.
    if (recorder.ended === null && res.headersSent) await finishLogged(services, owner, recorder.recording());
    else if (upstreamMayHaveBilled(error)) charged = failedAfterUpstreamResponse(toMetergateError(error, services.metrics));
    throw error;
  }
  if (recorder.ended !== null) await recorder.ended;
  else await finishLogged(services, owner, recorder.silent ? null : recorder.recording());
}

async function claim(services: Services, call: KeyedCall, hash: Buffer): Promise<IdempotencyRow | null> {
  const db = services.pools.write;
  for (let round = 0; round < CLAIM_ROUNDS_MAX; round += 1) {
    const claimed = await idempotency.claimKey(db, {
      userId: call.userId, key: call.key, bodyHash: hash, requestId: call.requestId,
      replicaId: services.config.replicaId, stream: call.stream, ttlHours: services.config.idempotencyTtlHours,
    });
    if (claimed) {
      services.metrics.idempotency.inc({ outcome: 'claimed' });
      return null;
    }
    const row = await idempotency.findKey(db, call.userId, call.key);
    if (row !== null) return row;
  }
  services.metrics.idempotency.inc({ outcome: 'conflict' });
  throw new MetergateError('conflict', 'a request with this Idempotency-Key is in progress; retry shortly', { retryAfterS: 1 });
}

function answerExisting(services: Services, row: IdempotencyRow, hash: Buffer, res: ServerResponse): void {
  if (!row.bodyHash.equals(hash)) {
    services.metrics.idempotency.inc({ outcome: 'mismatch' });
    throw new MetergateError('unprocessable', 'this Idempotency-Key was already used with a different request body', { param: 'Idempotency-Key' });
  }
  if (row.state === 'running' || row.response === null) {
    services.metrics.idempotency.inc({ outcome: 'conflict' });
    throw new MetergateError('conflict', 'a request with this Idempotency-Key is in progress; retry after it completes', { retryAfterS: 1 });
  }
  services.metrics.idempotency.inc({ outcome: 'replayed' });
  replay(res, row.response, row.requestId);
}

type KeyOwner = { userId: string; key: string; requestId: string };

/**
 * Never rejects (the response's end waits on it): a failure to even build the stored answer is
 * logged, and the key stays running until the reconciler finishes it.
 */
async function finishLogged(services: Services, owner: KeyOwner, recording: Recording | null,
  charged: StoredResponse | null = null): Promise<void> {
  try {
    await finish(services, owner, recording, charged);
  } catch (error) {
    services.log.error({ err: error, requestId: owner.requestId }, 'could not finish the idempotency key');
  }
}

/**
 * A 2xx answer is kept for replay; so is `charged`, the answer to an attempt the upstream may
 * have billed; anything else was an error before output: released.
 */
function finish(services: Services, owner: KeyOwner, recording: Recording | null, charged: StoredResponse | null): Promise<void> {
  const db = services.pools.write;
  const writer = services.idempotencyWriter;
  if (charged !== null) return writer.write(owner.requestId, 'stored', () => idempotency.completeKey(db, owner, charged));
  if (recording === null || recording.status < 200 || recording.status >= 300) {
    return writer.write(owner.requestId, 'released', () => idempotency.releaseKey(db, owner));
  }
  const stored = toStoredResponse(recording);
  return writer.write(owner.requestId, 'stored', () => idempotency.completeKey(db, owner, stored));
}
