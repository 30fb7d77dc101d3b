import { pricing } from '@metergate/db';

/**
 * Machine output uses the admin HTTP API's own JSON mappers (field names, USD decimal strings
 * with all nine digits, multipliers with all six), so `--json` and the API can never drift.
 * Imported through the server's `./ledger-json` subpath export: that module depends on
 * @metergate/db only, so the CLI does not load the HTTP stack to print JSON.
 */
export { entryJson, requestJson, usageJson, userJson, userListJson } from '@metergate/server/ledger-json';

/** As GET /admin/pricing answers. */
export function defaultPricingJson(p: pricing.Pricing) {
  return { default_multiplier: pricing.formatMultiplier(p.defaultPpm), updated_at: p.updatedAt.toISOString() };
}

/** As GET /admin/users/:id/pricing answers: the override (or null), the default, and the one in force. */
export function userPricingJson(userId: string, p: pricing.Pricing) {
  return {
    user_id: userId,
    multiplier: p.userPpm === null ? null : pricing.formatMultiplier(p.userPpm),
    default_multiplier: pricing.formatMultiplier(p.defaultPpm),
    effective_multiplier: pricing.formatMultiplier(p.effectivePpm),
  };
}
