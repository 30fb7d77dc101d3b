import { usdNumberToNano } from '@metergate/db';

export interface MeasuredCost {
  costNano: bigint;
  promptTokens: number | null;
  completionTokens: number | null;
}

/**
 * OpenRouter's `usage` (body or stream) or `/generation` data to an exact cost. Returns null
 * when no usable cost is there (absent, null, negative or not a number): the caller must then
 * look it up, never assume zero.
 */
export function costFromUsage(usage: { cost?: unknown; prompt_tokens?: unknown; completion_tokens?: unknown } | null): MeasuredCost | null {
  if (usage === null || typeof usage.cost !== 'number' || !Number.isFinite(usage.cost) || usage.cost < 0) return null;
  return {
    costNano: usdNumberToNano(usage.cost),
    promptTokens: tokenCount(usage.prompt_tokens),
    completionTokens: tokenCount(usage.completion_tokens),
  };
}

export function costFromGeneration(data: { total_cost?: unknown; tokens_prompt?: unknown; tokens_completion?: unknown }): MeasuredCost | null {
  return costFromUsage({ cost: data.total_cost, prompt_tokens: data.tokens_prompt, completion_tokens: data.tokens_completion });
}

function tokenCount(value: unknown): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= 2_147_483_647 ? value : null;
}
