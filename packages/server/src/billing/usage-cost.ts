import { usdNumberToNano } from '@metergate/db';

export interface MeasuredCost {
  /** What the call cost in all (with BYOK: OpenRouter's fee + the provider's charge). */
  costNano: bigint;
  promptTokens: number | null;
  completionTokens: number | null;
  /** The model that served, as the upstream named it; null when it named none. */
  servedModel: string | null;
  /** The provider that served, as the upstream named it; null when it named none. */
  provider: string | null;
  /** Whether the upstream said bring-your-own-key; null when it did not say. */
  isByok: boolean | null;
}

/** What served a call, as named in the response body, the stream chunks or /generation. */
export interface Served {
  model?: unknown;
  provider?: unknown;
}

export interface UsageLike {
  cost?: unknown;
  prompt_tokens?: unknown;
  completion_tokens?: unknown;
  is_byok?: unknown;
  cost_details?: unknown;
}

/** A name the upstream gave: a model id or provider name is short; anything else is not one. */
const NAME_LENGTH_MAX = 512;

/**
 * OpenRouter's `usage` (body or stream) or `/generation` data to an exact cost. Returns null
 * when no usable cost is there (absent, null, negative or not a number): the caller must then
 * look it up, never assume zero. With `is_byok: true`, `cost` is only OpenRouter's fee and the
 * provider's charge is `cost_details.upstream_inference_cost`: the cost is their sum, each
 * float converted once to nano-USD and added as integers; without a usable provider charge
 * the cost is unknown (null), never the fee alone.
 */
export function costFromUsage(usage: UsageLike | null, served: Served = {}): MeasuredCost | null {
  if (usage === null) return null;
  const feeNano = usdCost(usage.cost);
  if (feeNano === null) return null;
  let costNano = feeNano;
  if (usage.is_byok === true) {
    const details = usage.cost_details;
    const providerNano = typeof details === 'object' && details !== null
      ? usdCost((details as { upstream_inference_cost?: unknown }).upstream_inference_cost)
      : null;
    if (providerNano === null) return null;
    costNano += providerNano;
  }
  return {
    costNano,
    promptTokens: tokenCount(usage.prompt_tokens),
    completionTokens: tokenCount(usage.completion_tokens),
    servedModel: name(served.model),
    provider: name(served.provider),
    isByok: typeof usage.is_byok === 'boolean' ? usage.is_byok : null,
  };
}

/** `/generation` data: `total_cost` (the fee alone with BYOK) + `upstream_inference_cost`. */
export function costFromGeneration(data: Record<string, unknown>): MeasuredCost | null {
  return costFromUsage({
    cost: data.total_cost, prompt_tokens: data.tokens_prompt, completion_tokens: data.tokens_completion,
    is_byok: data.is_byok, cost_details: { upstream_inference_cost: data.upstream_inference_cost },
  }, { model: data.model, provider: data.provider_name });
}

function usdCost(value: unknown): bigint | null {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? usdNumberToNano(value) : null;
}

function name(value: unknown): string | null {
  return typeof value === 'string' && value !== '' && value.length <= NAME_LENGTH_MAX ? value : null;
}

function tokenCount(value: unknown): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= 2_147_483_647 ? value : null;
}
