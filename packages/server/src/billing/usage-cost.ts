import { usdNumberToNano } from '@metergate/db';

export interface MeasuredCost {
  costNano: bigint;
  promptTokens: number | null;
  completionTokens: number | null;
}

/**
 * A cost the upstream did report but that we will not charge automatically: negative, or
 * above callCostMaxNano (which also keeps every charge inside a Postgres bigint). The request
 * is left `unresolved` with reason `cost_out_of_range:<raw>` for an operator.
 */
export interface RejectedCost {
  readonly rejected: 'cost_out_of_range';
  /** The upstream's number as JavaScript prints it, for the operator. */
  readonly raw: string;
}

export type UsageCost = MeasuredCost | RejectedCost;

export function isRejectedCost(cost: UsageCost): cost is RejectedCost {
  return 'rejected' in cost;
}

/**
 * OpenRouter's `usage` (body or stream) or `/generation` data to an exact cost. Returns null
 * when no cost is there (absent, null or not a number): the caller must then look it up, never
 * assume zero. A number is converted by the one rounding rule (so 1e-41 is 0 nano) and then
 * rejected if negative or above `callCostMaxNano`; see README, "Money".
 */
export function costFromUsage(usage: { cost?: unknown; prompt_tokens?: unknown; completion_tokens?: unknown } | null,
  callCostMaxNano: bigint): UsageCost | null {
  if (usage === null || typeof usage.cost !== 'number') return null;
  // JSON numbers are finite; anything else did not come from JSON and is not a cost either.
  if (!Number.isFinite(usage.cost) || usage.cost < 0) return { rejected: 'cost_out_of_range', raw: String(usage.cost) };
  const costNano = usdNumberToNano(usage.cost);
  if (costNano > callCostMaxNano) return { rejected: 'cost_out_of_range', raw: String(usage.cost) };
  return {
    costNano,
    promptTokens: tokenCount(usage.prompt_tokens),
    completionTokens: tokenCount(usage.completion_tokens),
  };
}

export function costFromGeneration(data: { total_cost?: unknown; tokens_prompt?: unknown; tokens_completion?: unknown },
  callCostMaxNano: bigint): UsageCost | null {
  return costFromUsage({ cost: data.total_cost, prompt_tokens: data.tokens_prompt, completion_tokens: data.tokens_completion }, callCostMaxNano);
}

function tokenCount(value: unknown): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= 2_147_483_647 ? value : null;
}
