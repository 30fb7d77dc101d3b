import { formatNano, type ControlsState } from '@metergate/db';

/** The limits of a user or key as the admin API (GET/PUT .../limits) and the CLI show them. */
export function limitsJson(state: ControlsState): Record<string, unknown> {
  return {
    scope: state.scope.kind, id: state.scope.id, user_id: state.userId,
    spend: state.spend.map((s) => ({
      amount_usd: formatNano(s.amountNano), period: s.period, spent_usd: formatNano(s.spentNano), held_usd: formatNano(state.heldNano),
      remaining_usd: formatNano(s.amountNano - s.spentNano - state.heldNano),
      period_start: s.periodStart?.toISOString() ?? null, resets_at: s.resetsAt?.toISOString() ?? null,
    })),
    requests_per_minute: state.requestsPerMinute, requests_this_minute: state.requestsThisMinute,
    minute_resets_at: state.minuteResetsAt.toISOString(),
    concurrent_calls: state.concurrentCalls, open_calls: state.openCalls, held_usd: formatNano(state.heldNano),
    models: { allow: state.models.allow, deny: state.models.deny },
  };
}
