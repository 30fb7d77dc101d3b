import type { Books, Generation } from './books.js';
import { usdNumber } from './money.js';
import { priceOf, type ModelSpec } from './models.js';
import type { FinishReason } from './types.js';

/**
 * What a generation costs. Per the protocol, no output with a blank or error finish reason
 * (cancelled before the first token, error before output, cut before output) is not charged;
 * otherwise prompt + completion tokens produced + the per-request price.
 */
export function billableNano(
  model: ModelSpec,
  promptTokens: number,
  completionTokens: number,
  finishReason: FinishReason,
): bigint {
  const noOutput = completionTokens === 0 && (finishReason === null || finishReason === 'error');
  return noOutput ? 0n : priceOf(model, promptTokens, completionTokens);
}

/** Bills and closes a generation in the books; returns the cost for the usage object. */
export function settleGeneration(
  books: Books,
  generation: Generation,
  model: ModelSpec,
  outcome: { completionTokens: number; finishReason: FinishReason; cancelled: boolean },
): bigint {
  const { promptTokens } = generation.record;
  const costNano = billableNano(model, promptTokens, outcome.completionTokens, outcome.finishReason);
  books.settle(generation, { ...outcome, costNano });
  return costNano;
}

/** OpenRouter's usage object; `withCost: false` leaves `cost` out (steering omit_usage). */
export function usageObject(
  promptTokens: number,
  completionTokens: number,
  costNano: bigint,
  withCost = true,
): Record<string, unknown> {
  const usage: Record<string, unknown> = {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
  if (withCost) usage['cost'] = usdNumber(costNano);
  usage['is_byok'] = false;
  usage['prompt_tokens_details'] = { cached_tokens: 0 };
  usage['completion_tokens_details'] = { reasoning_tokens: 0 };
  usage['cost_details'] = { upstream_inference_cost: null };
  return usage;
}
