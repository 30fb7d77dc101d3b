import type { Books, Generation } from './books.js';
import { usdNumber } from './money.js';
import { priceOf, type ModelSpec } from './models.js';
import type { FinishReason } from './types.js';

/** OpenRouter's fee on a BYOK generation, in percent of the provider's charge. */
const BYOK_FEE_PERCENT = 5n;

/** What one generation costs, split the way OpenRouter's usage object reports it. */
export interface Charge {
  /** Everything the generation cost (with BYOK: the provider's charge + OpenRouter's fee). */
  totalNano: bigint;
  /** What OpenRouter reports as `usage.cost`: the total, or with BYOK only its fee. */
  costNano: bigint;
  /** With BYOK the provider's charge (`cost_details.upstream_inference_cost`), else null. */
  upstreamInferenceNano: bigint | null;
  promptNano: bigint;
  completionsNano: bigint;
}

/**
 * What a generation costs. Per the protocol, no output with a blank or error finish reason
 * (cancelled before the first token, error before output, cut before output) is not charged;
 * otherwise prompt + completion tokens produced + the per-request price. With BYOK the provider
 * charges that and OpenRouter adds its fee (rounded up to a nano-USD).
 */
export function chargeOf(
  model: ModelSpec,
  promptTokens: number,
  completionTokens: number,
  finishReason: FinishReason,
  byok: boolean,
): Charge {
  const noOutput = completionTokens === 0 && (finishReason === null || finishReason === 'error');
  if (noOutput) {
    return { totalNano: 0n, costNano: 0n, upstreamInferenceNano: byok ? 0n : null, promptNano: 0n, completionsNano: 0n };
  }
  const providerNano = priceOf(model, promptTokens, completionTokens);
  const promptNano = BigInt(promptTokens) * model.price.promptNano;
  const completionsNano = BigInt(completionTokens) * model.price.completionNano;
  if (!byok) return { totalNano: providerNano, costNano: providerNano, upstreamInferenceNano: null, promptNano, completionsNano };
  const feeNano = (providerNano * BYOK_FEE_PERCENT + 99n) / 100n;
  return { totalNano: providerNano + feeNano, costNano: feeNano, upstreamInferenceNano: providerNano, promptNano, completionsNano };
}

/** Bills and closes a generation in the books; returns the charge for the usage object. */
export function settleGeneration(
  books: Books,
  generation: Generation,
  model: ModelSpec,
  outcome: { completionTokens: number; finishReason: FinishReason; cancelled: boolean },
): Charge {
  const { promptTokens, isByok } = generation.record;
  const charge = chargeOf(model, promptTokens, outcome.completionTokens, outcome.finishReason, isByok);
  books.settle(generation, { ...outcome, costNano: charge.totalNano, upstreamInferenceNano: charge.upstreamInferenceNano });
  return charge;
}

/**
 * OpenRouter's usage object; `withCost: false` leaves `cost` out (steering omit_usage).
 * `cost_details` always carries the prompt and completions split as numbers: the official
 * @openrouter/sdk rejects a usage object without them.
 */
export function usageObject(
  promptTokens: number,
  completionTokens: number,
  charge: Charge,
  withCost = true,
): Record<string, unknown> {
  const usage: Record<string, unknown> = {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
  if (withCost) usage['cost'] = usdNumber(charge.costNano);
  usage['is_byok'] = charge.upstreamInferenceNano !== null;
  usage['prompt_tokens_details'] = { cached_tokens: 0 };
  usage['completion_tokens_details'] = { reasoning_tokens: 0 };
  usage['cost_details'] = {
    upstream_inference_cost: charge.upstreamInferenceNano === null ? null : usdNumber(charge.upstreamInferenceNano),
    upstream_inference_prompt_cost: usdNumber(charge.promptNano),
    upstream_inference_completions_cost: usdNumber(charge.completionsNano),
  };
  return usage;
}
