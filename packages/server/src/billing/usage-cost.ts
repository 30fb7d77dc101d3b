import { usdNumberToNano } from '@metergate/db';
import type { UpstreamUsage } from '../upstream/sse-tap.js';

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
  /** Prompt tokens read from cache, written to cache, and reasoning tokens; null when not said. */
  cachedTokens?: number | null;
  cacheWriteTokens?: number | null;
  reasoningTokens?: number | null;
}

/**
 * A cost the upstream did report but that we will not charge automatically: negative, or
 * above callCostMaxNano (which also keeps every charge inside a Postgres bigint). The request
 * is left `unresolved` with reason `cost_out_of_range:<raw>` for an operator.
 */
export interface RejectedCost {
  readonly rejected: 'cost_out_of_range';
  /** The upstream's number(s) as JavaScript prints them, for the operator. */
  readonly raw: string;
}

export type UsageCost = MeasuredCost | RejectedCost;

export function isRejectedCost(cost: UsageCost): cost is RejectedCost {
  return 'rejected' in cost;
}

/** What served a call, as named in the response body, the stream chunks or /generation. */
export interface Served {
  model?: unknown;
  provider?: unknown;
}

/** A usage object in chat's names; every endpoint's reader maps its own usage to them. */
export type UsageLike = UpstreamUsage;

/** A name the upstream gave: a model id or provider name is short; anything else is not one. */
const NAME_LENGTH_MAX = 512;

/**
 * OpenRouter's `usage` (body or stream) or `/generation` data to an exact cost. Returns null
 * when no cost is there (absent, null or not a number): the caller must then look it up, never
 * assume zero. With `is_byok: true`, `cost` is only OpenRouter's fee and the provider's charge
 * is `cost_details.upstream_inference_cost`: the cost is their sum, each float converted once
 * to nano-USD (the one rounding rule: 1e-41 is 0 nano) and added as integers; without a
 * provider charge the cost is unknown (null), never the fee alone. A number that is negative,
 * not finite, or a total above `callCostMaxNano` is rejected (README, "Money").
 */
export function costFromUsage(usage: UsageLike | null, callCostMaxNano: bigint, served: Served = {}): UsageCost | null {
  if (usage === null || typeof usage.cost !== 'number') return null;
  const parts: number[] = [usage.cost];
  if (usage.is_byok === true) {
    const details = usage.cost_details;
    const provider = typeof details === 'object' && details !== null ? (details as { upstream_inference_cost?: unknown }).upstream_inference_cost : undefined;
    if (typeof provider !== 'number') return null;
    parts.push(provider);
  }
  const raw = parts.map(String).join('+');
  // JSON numbers are finite; anything else did not come from JSON and is not a cost either.
  if (parts.some((part) => !Number.isFinite(part) || part < 0)) return { rejected: 'cost_out_of_range', raw };
  const costNano = parts.reduce((sum, part) => sum + usdNumberToNano(part), 0n);
  if (costNano > callCostMaxNano) return { rejected: 'cost_out_of_range', raw };
  return {
    costNano,
    promptTokens: tokenCount(usage.prompt_tokens),
    completionTokens: tokenCount(usage.completion_tokens),
    servedModel: name(served.model),
    provider: name(served.provider),
    isByok: typeof usage.is_byok === 'boolean' ? usage.is_byok : null,
    cachedTokens: tokenCount(field(usage.prompt_tokens_details, 'cached_tokens')),
    cacheWriteTokens: tokenCount(field(usage.prompt_tokens_details, 'cache_write_tokens')),
    reasoningTokens: tokenCount(field(usage.completion_tokens_details, 'reasoning_tokens')),
  };
}

function field(object: unknown, key: string): unknown {
  return typeof object === 'object' && object !== null ? (object as Record<string, unknown>)[key] : undefined;
}

/** `/generation` data: `total_cost` (the fee alone with BYOK) + `upstream_inference_cost`. */
export function costFromGeneration(data: Record<string, unknown>, callCostMaxNano: bigint): UsageCost | null {
  return costFromUsage({
    cost: data.total_cost, prompt_tokens: data.tokens_prompt, completion_tokens: data.tokens_completion,
    is_byok: data.is_byok, cost_details: { upstream_inference_cost: data.upstream_inference_cost },
  }, callCostMaxNano, { model: data.model, provider: data.provider_name });
}

function name(value: unknown): string | null {
  return typeof value === 'string' && value !== '' && value.length <= NAME_LENGTH_MAX ? value : null;
}

function tokenCount(value: unknown): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= 2_147_483_647 ? value : null;
}
