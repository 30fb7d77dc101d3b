import { formatNano, type LedgerEntry, type UserRow } from '@metergate/db';

/** Admin JSON: amounts as decimal USD strings with all nine stored digits. */
export function entryJson(entry: LedgerEntry) {
  return {
    id: entry.id,
    user_id: entry.userId,
    kind: entry.kind,
    amount_usd: formatNano(entry.amountNano),
    upstream_cost_usd: entry.upstreamCostNano === null ? null : formatNano(entry.upstreamCostNano),
    balance_after_usd: formatNano(entry.balanceAfterNano),
    request_id: entry.requestId,
    generation_id: entry.generationId,
    model: entry.model,
    prompt_tokens: entry.promptTokens,
    completion_tokens: entry.completionTokens,
    created_at: entry.createdAt.toISOString(),
    note: entry.note,
  };
}

export function userJson(user: UserRow) {
  return {
    id: user.id,
    balance_usd: formatNano(user.balanceNano),
    total_credits_usd: formatNano(user.creditsNano),
    total_usage_usd: formatNano(user.usageNano),
    created_at: user.createdAt.toISOString(),
  };
}
