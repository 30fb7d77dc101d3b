import type { ControlsState, SpendPeriod } from '@metergate/db';

/** OpenRouter's `limit_reset` names for our periods (`never`: no reset, null). */
const RESET_NAMES: Record<SpendPeriod, string | null> = { day: 'daily', week: 'weekly', month: 'monthly', never: null };

export interface BindingLimit {
  /** The limit's amount, charged nano-USD. */
  amountNano: bigint;
  /** What can still be spent under it: amount − spent in the period − held, never below 0. */
  remainingNano: bigint;
  /** OpenRouter's name for its reset period, or null (`never`). */
  reset: string | null;
  resetsAt: Date | null;
}

/**
 * Of the spend limits that apply to a call made with this key (the key's own and its user's),
 * the one with the least left: the one a call would be refused by first. Null when neither has
 * a spend limit. Each limit counts its own scope's holds, as the admission statement does.
 */
export function bindingLimit(scopes: ReadonlyArray<ControlsState | null>): BindingLimit | null {
  let binding: BindingLimit | null = null;
  for (const state of scopes) {
    if (state === null) continue;
    for (const limit of state.spend) {
      const left = limit.amountNano - limit.spentNano - state.heldNano;
      const remainingNano = left > 0n ? left : 0n;
      if (binding === null || remainingNano < binding.remainingNano) {
        binding = { amountNano: limit.amountNano, remainingNano, reset: RESET_NAMES[limit.period], resetsAt: limit.resetsAt };
      }
    }
  }
  return binding;
}
