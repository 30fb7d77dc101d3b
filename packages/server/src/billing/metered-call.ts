import { performance } from 'node:perf_hooks';
import type { ServerResponse } from 'node:http';
import { requests } from '@metergate/db';
import { MetergateError } from '../errors.js';
import type { Services } from '../services.js';
import { relaySse, type RelayOutcome } from '../upstream/sse-relay.js';
import { readBody } from '../upstream/read-body.js';
import type { UpstreamResponse } from '../upstream/openrouter.js';
import type { ChatBody } from './chat-body.js';
import { chatEndpoint } from './chat-endpoint.js';
import { isRecord, type Endpoint, type ParsedAnswer } from './endpoint.js';
import { neverReachedUpstream } from '../upstream/openrouter.js';
import { relayUpstreamError } from './upstream-error.js';
import { costFromUsage, type UsageCost } from './usage-cost.js';
import { BarrierBusyError, CallAbandonedError, type LockedContext } from '@metergate/db';
import { admitReserve, admitSerialize, cappedHoldNano, type AdmittedCall } from '../holds/admission.js';
import { defaultBudget, priceRequest, type Pricing } from '../holds/worst-case.js';
import { markUpstreamStarted } from './upstream-started.js';

export interface CallContext {
  readonly requestId: string;
  readonly userId: string;
  /** The API key the call came with (its limits apply). */
  readonly keyId?: string | null;
  readonly chat: ChatBody;
  /** Which endpoint: its upstream path, body, stream reader and usage reader. */
  readonly endpoint: Endpoint;
  readonly res: ServerResponse;
  /** Told about a finished body the client left before receiving (idempotent replay keeps it). */
  readonly onUnsent?: (status: number, headers: Record<string, string>, body: Buffer) => void;
  /** Serialize mode: the user's lock transaction, which the settle ends (one round trip). */
  readonly lockTxn?: LockedContext;
}

/** A call past admission: its hold is written, and what goes upstream is settled. */
interface AdmittedContext extends CallContext {
  readonly admitted: AdmittedCall;
}

/**
 * One metered chat completion: admission with a worst-case hold → upstream call → save cost
 * (which releases the hold). Serialize mode runs all of it under the user's cost barrier;
 * reserve mode only the admission. A cost lookup, if needed, runs as a detached task that
 * holds neither the lock nor a pool client; the hold stays until the cost lands.
 */
export async function meteredCall(services: Services, call: CallContext): Promise<void> {
  const pricing = pricingOf(services, call);
  const gone = clientGoneSignal(call.res);
  const request = {
    id: call.requestId, userId: call.userId, replicaId: services.config.replicaId, model: call.chat.model, stream: call.chat.stream,
    endpoint: call.endpoint.name,
    keyId: call.keyId ?? null,
  };
  try {
    if (services.config.barrierMode === 'reserve') {
      const admitted = await admitReserve(services, request, pricing, gone);
      await runAdmitted(services, { ...call, admitted }, gone);
      return;
    }
    await refuseBeforeQueueing(services, call.userId);
    await services.barrier.withUserCostLock(call.userId, async (lockTxn) => {
      const admitted = await admitSerialize(services, request, pricing);
      await runAdmitted(services, { ...call, admitted, lockTxn }, gone);
    }, gone).catch((error: unknown) => refuseIfQueueCannotBeAfforded(services, call.userId, pricing, error));
  } catch (error) {
    if (!(error instanceof CallAbandonedError)) throw error;
    services.metrics.admissions.inc({ mode: services.config.barrierMode, outcome: 'client_gone' });
    throw new MetergateError('client_closed', `the client left while the call waited (${error.stage}); nothing was sent upstream`, { cause: error });
  }
}

/** The worst case from the endpoint's own fields; an input-only call (embeddings) has no output budget. */
function pricingOf(services: Services, call: CallContext): Pricing {
  const pricing = priceRequest(call.endpoint.pricingView(call.chat.raw), (id) => services.priceBook.lookup(id));
  if (!call.endpoint.inputOnly || !pricing.priced) return pricing;
  return { priced: true, shape: { ...pricing.shape, completionAtto: 0n, completionLimit: 0n, clientBudget: 0n } };
}

/**
 * Serialize mode, when this user already has a call running or queued here: a user who could
 * not afford a call even once every call in flight has settled gets 402 now, not a queue slot
 * (holds of calls whose cost is unknown stay counted).
 */
async function refuseBeforeQueueing(services: Services, userId: string): Promise<void> {
  if (!services.barrier.contended(userId)) return;
  const afford = await requests.affordability(services.pools.write, userId);
  if (afford === null || afford.availableAfterInFlightNano > services.config.minBalanceNano) return;
  services.metrics.admissions.inc({ mode: 'serialize', outcome: 'insufficient_credits_before_queue' });
  throw new MetergateError('insufficient_credits', 'insufficient credits: the available balance (the balance less the holds of calls whose cost is not known yet) must be above the minimum to start a call');
}

/**
 * A full queue (BARRIER_QUEUE_DEPTH_MAX same-user calls waiting here) answers 503 busy only
 * while the calls ahead could all still be afforded at this call's worst case; beyond that the
 * user is out of credit for one more call, and 402 says so (a client retries a 503, and would
 * only meet the 402 later).
 */
async function refuseIfQueueCannotBeAfforded(services: Services, userId: string, pricing: Pricing, error: unknown): Promise<never> {
  if (!(error instanceof BarrierBusyError) || error.reason !== 'queue_full') throw error;
  const afford = await requests.affordability(services.pools.write, userId);
  const budget = pricing.priced ? defaultBudget(pricing.shape) : null;
  const perCallNano = pricing.priced && budget !== null ? cappedHoldNano(services, pricing.shape, budget) : services.config.holdFallbackNano;
  const aheadNano = BigInt(services.config.barrierQueueDepthMax) * perCallNano;
  if (afford !== null && afford.availableAfterInFlightNano - aheadNano <= services.config.minBalanceNano) {
    services.metrics.admissions.inc({ mode: 'serialize', outcome: 'insufficient_credits_queue_full' });
    throw new MetergateError('insufficient_credits', `insufficient credits: ${services.config.barrierQueueDepthMax} calls of this user are already waiting and their worst case exceeds the available balance`);
  }
  throw error;
}

/** Aborts once the client's connection closes before the response was finished. */
function clientGoneSignal(res: ServerResponse): AbortSignal {
  const gone = new AbortController();
  if (res.destroyed) gone.abort();
  else res.once('close', () => { if (!res.writableFinished) gone.abort(); });
  return gone.signal;
}

/** The client may have left during admission: then nothing is sent and the hold is released. */
async function runAdmitted(services: Services, call: AdmittedContext, gone: AbortSignal): Promise<void> {
  if (gone.aborted) {
    await requests.markFailed(services.pools.write, call.requestId, 'client_gone_before_upstream');
    services.metrics.admissions.inc({ mode: services.config.barrierMode, outcome: 'client_gone' });
    throw new MetergateError('client_closed', 'the client left before the call was sent upstream; nothing was sent or charged');
  }
  return call.chat.stream && call.endpoint.stream !== null ? streamingCall(services, call) : jsonCall(services, call);
}

async function openUpstream(services: Services, call: AdmittedContext, signal: AbortSignal): Promise<UpstreamResponse> {
  try {
    const headersTimeoutMs = call.chat.stream ? services.config.upstreamTimeoutMs : services.config.upstreamDurationMsMax;
    const body = call.endpoint.upstreamBody(call.chat, call.userId, call.admitted.injectedMaxTokens);
    // Chat keeps its own method (tests replace it); every other endpoint posts to its path.
    return call.endpoint === chatEndpoint
      ? await services.upstream.chatCompletions(body, signal, headersTimeoutMs)
      : await services.upstream.post(call.endpoint.path, body, signal, headersTimeoutMs);
  } catch (error) {
    // No response means no generation id: if the provider did start, only an operator can
    // match it, so the request is left visible as unresolved rather than dropped.
    const reason = error instanceof MetergateError ? error.code : 'upstream_failed';
    services.metrics.upstreamErrors.inc({ kind: reason });
    const never = neverReachedUpstream(error);
    const close = never
      ? requests.markFailed(services.pools.write, call.requestId, reason)
      : requests.markUnresolved(services.pools.write, call.requestId, reason);
    await close.catch((dbError: unknown) => services.log.error({ err: dbError, requestId: call.requestId }, 'could not close request row'));
    throw never ? error : markUpstreamStarted(error);
  }
}

async function streamingCall(services: Services, call: AdmittedContext): Promise<void> {
  const abort = new AbortController();
  const limit = setTimeout(() => abort.abort(new Error('upstream duration limit')), services.config.upstreamDurationMsMax);
  const started = performance.now();
  try {
    const upstream = await openUpstream(services, call, abort.signal);
    if (upstream.status !== 200) return await failBeforeOutput(services, call, upstream);
    const recordings: Promise<void>[] = [];
    const outcome = await relaySse(upstream, call.res, {
      abort, requestId: call.requestId,
      onGenerationId: (id) => recordings.push(recordGenerationId(services, call.requestId, id)),
      writeStallMsMax: services.config.clientWriteStallMsMax, onStall: () => services.metrics.clientWriteStalls.inc(),
      format: call.endpoint.stream ?? undefined,
    });
    observeUpstream(services, 'true', started, outcome.firstByteS);
    await Promise.all(recordings);
    await settleStream(services, call, outcome);
  } finally {
    clearTimeout(limit);
  }
}

async function settleStream(services: Services, call: CallContext, outcome: RelayOutcome): Promise<void> {
  if (outcome.end === 'upstream_failed') {
    services.log.warn({ err: outcome.failure, requestId: call.requestId }, 'upstream stream failed mid-way');
  }
  const cost = costFromUsage(outcome.tap.usage, services.config.callCostMaxNano, outcome.tap);
  // [DONE] is released to the client only after the cost is written (or durably deferred).
  await settleOrDefer(services, call, outcome.tap.generationId, cost, `stream_${outcome.end}`);
  await outcome.finish();
}

async function jsonCall(services: Services, call: AdmittedContext): Promise<void> {
  // Not aborted when the client leaves: a non-streaming generation is billed in full anyway,
  // and reading it to the end gives us its cost without a lookup.
  const started = performance.now();
  const upstream = await openUpstream(services, call, AbortSignal.timeout(services.config.upstreamDurationMsMax));
  if (upstream.status !== 200) return await failBeforeOutput(services, call, upstream);
  const headerId = typeof upstream.headers['x-generation-id'] === 'string' ? upstream.headers['x-generation-id'] : null;
  // No separate commit for the id here: a non-streaming answer's headers come with the whole
  // generation, so the settle just below records it (and a settle that fails records it on
  // its own first: Settler.defer). One commit per call fewer.
  let bytes: Buffer;
  try {
    bytes = await readBody(upstream.body, services.config.upstreamBodyBytesMax);
  } catch (error) {
    await settleOrDefer(services, call, headerId, null, 'upstream_body_failed');
    // The generation ran (200, maybe an id): an Idempotency-Key retry must not run it again.
    throw markUpstreamStarted(error instanceof MetergateError ? error : new MetergateError('upstream_bad_response', 'the upstream response broke off', { cause: error }));
  }
  observeUpstream(services, 'false', started, null);
  const parsed = parseAnswer(call.endpoint, bytes);
  const generationId = headerId ?? parsed.id;
  await settleOrDefer(services, call, generationId, costFromUsage(parsed.usage, services.config.callCostMaxNano, parsed), 'json_without_cost');
  sendJson(call, upstream, bytes, generationId);
}

/** Settles now when the cost is known; otherwise records why and starts the lookup. */
async function settleOrDefer(services: Services, call: CallContext, generationId: string | null,
  cost: UsageCost | null, reason: string): Promise<void> {
  if (cost !== null) {
    await services.settler.settle({ requestId: call.requestId, userId: call.userId, generationId, cost }, call.lockTxn);
    return;
  }
  const db = services.pools.write;
  if (generationId === null) {
    await requests.markUnresolved(db, call.requestId, `${reason}:no_generation_id`).catch((error: unknown) => {
      services.log.error({ err: error, requestId: call.requestId }, 'could not mark request unresolved');
    });
    return;
  }
  // Marked durably first; if even that fails, the row stays in_flight under our replica id and
  // the reconciler finds it either way.
  // The reconciler leaves it to this process's lookups for as long as they can take.
  const nextLookupAt = new Date(Date.now() + services.costLookup.budgetMs);
  await requests.markAwaitingCost(db, call.requestId, { generationId, reason, nextLookupAt })
    .catch((error: unknown) => services.log.error({ err: error, requestId: call.requestId }, 'could not mark request awaiting cost'));
  services.costLookup.schedule(call.requestId, call.userId, generationId);
}

async function failBeforeOutput(services: Services, call: CallContext, upstream: UpstreamResponse): Promise<void> {
  services.metrics.upstreamErrors.inc({ kind: `status_${upstream.status}` });
  try {
    const reason = await relayUpstreamError(upstream, call.res, call.requestId, services.metrics);
    await requests.markFailed(services.pools.write, call.requestId, reason);
  } catch (error) {
    // If this write fails too, the request stays in_flight with its hold; its heartbeat stops
    // and the reconciler closes it. The relay's error is the one to report.
    await requests.markFailed(services.pools.write, call.requestId, `upstream_${upstream.status}`).catch(() => undefined);
    throw error;
  }
}

function recordGenerationId(services: Services, requestId: string, generationId: string): Promise<void> {
  return services.generationIds.submit({ requestId, generationId }).catch((error: unknown) => {
    services.log.warn({ err: error, requestId, generationId }, 'could not record generation id yet; settle records it');
  });
}

function parseAnswer(endpoint: Endpoint, bytes: Buffer): ParsedAnswer {
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString('utf8'));
  } catch {
    // Not JSON: no usage to read; the cost comes from the generation lookup.
    return { id: null, usage: null };
  }
  return isRecord(body) ? endpoint.parseAnswer(body) : { id: null, usage: null };
}

function sendJson(call: CallContext, upstream: UpstreamResponse, bytes: Buffer, generationId: string | null): void {
  const { res } = call;
  const type = upstream.headers['content-type'];
  const headers: Record<string, string> = { 'content-type': typeof type === 'string' ? type : 'application/json' };
  if (generationId !== null) headers['x-generation-id'] = generationId;
  if (res.destroyed) {
    call.onUnsent?.(upstream.status, headers, bytes);
    return;
  }
  res.statusCode = upstream.status;
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.setHeader('x-request-id', call.requestId);
  res.end(bytes);
}

function observeUpstream(services: Services, stream: 'true' | 'false', started: number, firstByteS: number | null): void {
  services.metrics.upstreamDuration.observe({ stream }, (performance.now() - started) / 1000);
  if (firstByteS !== null) services.metrics.upstreamTtfb.observe({ stream }, firstByteS);
}
