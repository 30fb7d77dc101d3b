import { formatNano, pricing, type LedgerEntry, type RequestRow, type UsageRow, type UserListRow, type UserRow } from '@metergate/db';

/**
 * Admin JSON: amounts as decimal USD strings with all nine stored digits, multipliers as
 * decimal strings with all six. For usage, `amount_usd` is minus the amount charged,
 * `charged_usd` the amount charged and `upstream_cost_usd` what the upstream billed.
 */
export function entryJson(entry: LedgerEntry) {
  return {
    id: entry.id,
    user_id: entry.userId,
    kind: entry.kind,
    amount_usd: formatNano(entry.amountNano),
    charged_usd: entry.kind === 'usage' ? formatNano(-entry.amountNano) : null,
    upstream_cost_usd: entry.upstreamCostNano === null ? null : formatNano(entry.upstreamCostNano),
    multiplier: entry.multiplierPpm === null ? null : pricing.formatMultiplier(entry.multiplierPpm),
    balance_after_usd: formatNano(entry.balanceAfterNano),
    request_id: entry.requestId,
    generation_id: entry.generationId,
    model: entry.model,
    prompt_tokens: entry.promptTokens,
    completion_tokens: entry.completionTokens,
    created_at: entry.createdAt.toISOString(),
    note: entry.note,
    requested_model: entry.requestedModel,
    provider: entry.provider,
    is_byok: entry.isByok,
    endpoint: entry.endpoint,
    cached_tokens: entry.cachedTokens,
    cache_write_tokens: entry.cacheWriteTokens,
    reasoning_tokens: entry.reasoningTokens,
  };
}

export type EntryJson = ReturnType<typeof entryJson>;

export function userJson(user: UserRow) {
  return {
    id: user.id,
    balance_usd: formatNano(user.balanceNano),
    held_usd: formatNano(user.heldNano),
    available_usd: formatNano(user.balanceNano - user.heldNano),
    total_credits_usd: formatNano(user.creditsNano),
    total_usage_usd: formatNano(user.usageNano),
    created_at: user.createdAt.toISOString(),
  };
}

/** A row of GET /admin/users: the user, its all-time spend, and its multiplier override. */
export function userListJson(user: UserListRow) {
  return {
    ...userJson(user),
    spend_usd: formatNano(user.spendNano),
    multiplier: user.multiplierPpm === null ? null : pricing.formatMultiplier(user.multiplierPpm),
  };
}

/**
 * upstream_cost_usd is what the upstream billed (requests.cost_nano); the ledger has the amount
 * charged. `cost_usd` is its old name, kept for one release (0.2 drops it; see the README).
 */
export function requestJson(request: RequestRow) {
  const upstreamCost = request.costNano === null ? null : formatNano(BigInt(request.costNano));
  return {
    id: request.id,
    user_id: request.userId,
    replica_id: request.replicaId,
    model: request.model,
    state: request.state,
    generation_id: request.generationId,
    upstream_cost_usd: upstreamCost,
    /** @deprecated the same as upstream_cost_usd; removed in 0.2. */
    cost_usd: upstreamCost,
    hold_usd: formatNano(BigInt(request.holdNano)),
    reason: request.reason,
    lookup_attempts: request.lookupAttempts,
    started_at: request.startedAt.toISOString(),
    settled_at: request.settledAt === null ? null : request.settledAt.toISOString(),
  };
}

/**
 * charged_usd = charged; upstream_cost_usd = billed upstream; the margin is their difference.
 * `cost_usd` is charged_usd's old name, kept for one release (0.2 drops it).
 */
export function usageJson(row: UsageRow) {
  const charged = formatNano(row.chargedNano);
  return {
    key: row.key,
    requests: row.requests,
    prompt_tokens: row.promptTokens,
    completion_tokens: row.completionTokens,
    charged_usd: charged,
    upstream_cost_usd: formatNano(row.upstreamCostNano),
    /** @deprecated the same as charged_usd; removed in 0.2. */
    cost_usd: charged,
  };
}
