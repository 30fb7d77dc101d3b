import { performance } from 'node:perf_hooks';
import { costLockKey, formatNano, requests, type Affordability, type AdmitOutcome, type NewRequest } from '@metergate/db';
import { limitError } from '../controls/refusals.js';
import { MetergateError } from '../errors.js';
import type { Services } from '../services.js';
import { affordableBudget, defaultBudget, worstCaseNano, type CostShape, type Pricing } from './worst-case.js';
import type { HoldCall } from './admission-batcher.js';

/** Below this, a reserve-mode budget is refused rather than sent (some providers require ≥ 16). */
export const RESERVE_COMPLETION_TOKENS_MIN = 16n;
/** A budget chosen for the client is capped here (no model lists more output than this). */
export const RESERVE_COMPLETION_TOKENS_MAX = 1_000_000n;
const INT32_MAX = 2_147_483_647n;

export interface AdmittedCall {
  /** The hold written (charged nano-USD, after the user's multiplier). */
  holdNano: bigint;
  /** Reserve mode: the max_tokens set on the upstream body when the client sent none. */
  injectedMaxTokens: number | null;
}

/**
 * A call's hold in upstream nano-USD: its worst case, but never more than CALL_COST_MAX_USD.
 * A cost above that is not charged automatically anyway (it ends unresolved, keeping its
 * hold), and the cap keeps every hold, times any multiplier, inside a Postgres bigint: a
 * client's max_tokens of 9e15 on a model without listed limits was a 500 before it.
 */
export function cappedHoldNano(services: Services, shape: CostShape, budget: bigint): bigint {
  const worst = worstCaseNano(shape, budget);
  return worst < services.config.callCostMaxNano ? worst : services.config.callCostMaxNano;
}

function tokensColumn(budget: bigint | null): number | null {
  return budget === null ? null : Number(budget > INT32_MAX ? INT32_MAX : budget);
}

function refused(services: Services, message: string, param?: string): MetergateError {
  services.metrics.admissions.inc({ mode: services.config.barrierMode, outcome: 'insufficient_credits' });
  return new MetergateError('insufficient_credits', message, param === undefined ? {} : { param });
}

/**
 * Serialize mode, under the user's lock: admit while balance − held > minimum and hold the
 * call's worst case (or HOLD_FALLBACK_USD when the book cannot bound it), so that if its cost
 * ends up unknown, later admissions see it.
 */
export async function admitSerialize(services: Services, request: NewRequest, pricing: Pricing): Promise<AdmittedCall> {
  const budget = pricing.priced ? defaultBudget(pricing.shape) : null;
  const bounded = pricing.priced && budget !== null;
  const upstreamHoldNano = bounded ? cappedHoldNano(services, pricing.shape, budget) : services.config.holdFallbackNano;
  const outcomes = await services.admissionStatements.submit({
    mode: 'serialize', userId: request.userId, lockKey: null, now: services.clock(),
    calls: [{ id: request.id, model: request.model, stream: request.stream, keyId: request.keyId ?? null, endpoint: request.endpoint ?? 'chat',
      upstreamHoldNano, holdCompletionTokens: bounded ? tokensColumn(budget) : null }],
  });
  const result = outcomes.get(request.id) ?? { admitted: false };
  if (!result.admitted) {
    const limited = !('refusal' in result) ? null : limitError(services, result.refusal);
    if (limited !== null) throw limited;
    throw refused(services, 'insufficient credits: the available balance (the balance less the holds of calls whose cost is not known yet) must be above the minimum to start a call');
  }
  services.metrics.admissions.inc({ mode: 'serialize', outcome: bounded ? 'admitted' : 'admitted_fallback_hold' });
  return { holdNano: result.holdNano, injectedMaxTokens: null };
}

function limitBinds(services: Services, afford: Affordability): boolean {
  return afford.limitRoomNano !== null && afford.limitRoomNano < afford.availableNano - services.config.minBalanceNano;
}

/** The upstream nano-USD a user can still hold, after the minimum and their multiplier. */
function spareUpstreamNano(services: Services, afford: Affordability): bigint {
  const balanceSpare = afford.availableNano - services.config.minBalanceNano;
  // A spend limit with less room than the balance bounds the budget too.
  const spare = afford.limitRoomNano !== null && afford.limitRoomNano < balanceSpare ? afford.limitRoomNano : balanceSpare;
  return spare <= 0n ? -1n : (spare * 1_000_000n) / afford.multiplierPpm;
}

/**
 * Reserve mode: the same lock only inside the admission statement; admitted only when the
 * whole worst case fits (available − hold ≥ minimum). A client that sets no output limit gets
 * the largest one it can afford, sent upstream as max_tokens.
 */
export async function admitReserve(services: Services, request: NewRequest, pricing: Pricing, signal?: AbortSignal): Promise<AdmittedCall> {
  if (!pricing.priced) {
    services.metrics.admissions.inc({ mode: 'reserve', outcome: 'unpriced_model' });
    throw new MetergateError('unpriced_model', `${pricing.reason}: this proxy cannot bound the call's cost, so it does not start it (an operator can pin a price: PUT /admin/prices)`, { param: 'model' });
  }
  const { shape } = pricing;
  if (shape.clientBudget !== null) {
    const budget = defaultBudget(shape)!;
    const held = heldOrThrow(services, await services.admissions.admit(request.userId, holdCall(request, cappedHoldNano(services, shape, budget), budget), signal));
    if (held !== null) return admittedReserve(services, held, null);
    throw await unaffordable(services, request.userId, shape, budget);
  }
  // The budget depends on the balance: read it and admit in one turn of this user's queue.
  return services.admissions.solo(request.userId, async () => {
    const full = await admitFullBudget(services, request, shape);
    if (full !== null) return full;
    // Two tries: another replica may spend between the read and the admission.
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const afford = await readAffordability(services, request.userId, request.keyId ?? null);
      const fits = affordableBudget(shape, spareUpstreamNano(services, afford));
      if (fits === null || fits < RESERVE_COMPLETION_TOKENS_MIN) {
        if (!limitBinds(services, afford)) break;
        // The spend limit, not the balance, leaves no room: the admission statement says which
        // limit and when it resets (a limit error is thrown), unless room appeared meanwhile.
        const held = await admitOne(services, request, holdCall(request, cappedHoldNano(services, shape, RESERVE_COMPLETION_TOKENS_MIN), RESERVE_COMPLETION_TOKENS_MIN));
        if (held !== null) return admittedReserve(services, held, Number(RESERVE_COMPLETION_TOKENS_MIN));
        break;
      }
      const budget = fits > RESERVE_COMPLETION_TOKENS_MAX ? RESERVE_COMPLETION_TOKENS_MAX : fits;
      const held = await admitOne(services, request, holdCall(request, cappedHoldNano(services, shape, budget), budget));
      if (held !== null) return admittedReserve(services, held, Number(budget));
    }
    throw await unaffordable(services, request.userId, shape, null);
  }, signal);
}

/**
 * The common case first, in one round trip instead of two: a user who can afford the model's
 * whole output limit gets exactly that budget from the read below, so the admission is tried
 * with it straight away (the statement admits only if its worst case fits, under the lock). A
 * model without a listed limit, or a user who cannot afford it, goes the read-then-admit way.
 */
async function admitFullBudget(services: Services, request: NewRequest, shape: CostShape): Promise<AdmittedCall | null> {
  if (shape.completionLimit === null) return null;
  const budget = shape.completionLimit > RESERVE_COMPLETION_TOKENS_MAX ? RESERVE_COMPLETION_TOKENS_MAX : shape.completionLimit;
  if (budget < RESERVE_COMPLETION_TOKENS_MIN) return null;
  const call = holdCall(request, cappedHoldNano(services, shape, budget), budget);
  const outcome = (await runAdmissionBatch(services, request.userId, [call], { probe: true })).get(call.id);
  if (outcome === undefined) return null;
  if (outcome.admitted) return admittedReserve(services, outcome.holdNano, Number(budget));
  // Too dear for the balance or a spend limit: a smaller budget may fit (the read below). A
  // rate or concurrency limit refuses any budget, so its error stands.
  if (outcome.refusal.kind === 'insufficient_credits' || outcome.refusal.kind === 'spend_limit') return null;
  throw limitError(services, outcome.refusal)!;
}

function holdCall(request: NewRequest, upstreamHoldNano: bigint, budget: bigint): HoldCall {
  return {
    id: request.id, model: request.model, stream: request.stream, upstreamHoldNano, holdCompletionTokens: tokensColumn(budget),
    keyId: request.keyId ?? null, endpoint: request.endpoint ?? 'chat',
  };
}

/** The hold of an admitted call; null when the balance refused it; a limit's error thrown. */
function heldOrThrow(services: Services, outcome: AdmitOutcome): bigint | null {
  if (outcome.admitted) return outcome.holdNano;
  const limited = limitError(services, outcome.refusal);
  if (limited !== null) throw limited;
  return null;
}

function admittedReserve(services: Services, holdNano: bigint, injectedMaxTokens: number | null): AdmittedCall {
  services.metrics.admissions.inc({ mode: 'reserve', outcome: 'admitted' });
  return { holdNano, injectedMaxTokens };
}

async function admitOne(services: Services, request: NewRequest, call: HoldCall): Promise<bigint | null> {
  const outcome = (await runAdmissionBatch(services, request.userId, [call])).get(call.id);
  return outcome === undefined ? null : heldOrThrow(services, outcome);
}

/** One reserve admission statement (the user's lock is held inside it, for its duration). */
export async function runAdmissionBatch(services: Services, userId: string, calls: HoldCall[],
  options: { probe?: boolean } = {}): Promise<Map<string, AdmitOutcome>> {
  const started = performance.now();
  try {
    return await services.admissionStatements.submit({
      mode: 'reserve', userId, lockKey: costLockKey(userId), calls, now: services.clock(), probe: options.probe ?? false,
    });
  } finally {
    services.metrics.lockHold.observe({ mode: 'reserve' }, (performance.now() - started) / 1000);
  }
}

async function readAffordability(services: Services, userId: string, keyId: string | null = null): Promise<Affordability> {
  const afford = await requests.affordability(services.pools.write, userId, keyId, services.clock());
  if (afford === null) throw new MetergateError('invalid_api_key', 'the user of this key no longer exists');
  return afford;
}

/** 402 saying what the call could cost, what is available, and the most output it can afford. */
async function unaffordable(services: Services, userId: string, shape: CostShape, asked: bigint | null): Promise<MetergateError> {
  const afford = await readAffordability(services, userId);
  const most = affordableBudget(shape, spareUpstreamNano(services, afford));
  const available = `available ${formatNano(afford.availableNano)} USD (the balance less the holds of calls in progress)`;
  const needed = asked === null ? '' : ` this call can cost up to ${formatNano(worstCaseNano(shape, asked) * afford.multiplierPpm / 1_000_000n)} USD (${asked} output tokens);`;
  const advice = most === null || most < RESERVE_COMPLETION_TOKENS_MIN
    ? 'not even the prompt fits: add credits'
    : `the most it can afford now is max_tokens=${most > RESERVE_COMPLETION_TOKENS_MAX ? RESERVE_COMPLETION_TOKENS_MAX : most}`;
  return refused(services, `insufficient credits:${needed} ${available}; ${advice}`, 'max_tokens');
}
