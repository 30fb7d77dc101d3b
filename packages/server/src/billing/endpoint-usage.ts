import type { UsageLike } from './usage-cost.js';
import { isRecord } from './endpoint.js';

// Each endpoint's usage object mapped to chat's names (UsageLike), so one cost rule reads all.

function pick(object: unknown, key: string): unknown {
  return isRecord(object) ? object[key] : undefined;
}

/** Drops absent fields, so that a partial usage (a Messages delta) merges over an earlier one. */
function present(usage: Record<string, unknown>): UsageLike {
  return Object.fromEntries(Object.entries(usage).filter(([, value]) => value !== undefined)) as UsageLike;
}

/** Responses: input_tokens / output_tokens, cached under input_tokens_details, reasoning under output_tokens_details. */
export function responsesUsage(usage: Record<string, unknown>): UsageLike {
  return present({
    cost: usage['cost'], prompt_tokens: usage['input_tokens'], completion_tokens: usage['output_tokens'],
    is_byok: usage['is_byok'], cost_details: usage['cost_details'],
    prompt_tokens_details: { cached_tokens: pick(usage['input_tokens_details'], 'cached_tokens') },
    completion_tokens_details: { reasoning_tokens: pick(usage['output_tokens_details'], 'reasoning_tokens') },
  });
}

/** Anthropic Messages: input_tokens / output_tokens, cache reads and writes apart. */
export function messagesUsage(usage: Record<string, unknown>): UsageLike {
  const cached = usage['cache_read_input_tokens'];
  const written = usage['cache_creation_input_tokens'];
  return present({
    cost: usage['cost'], prompt_tokens: usage['input_tokens'], completion_tokens: usage['output_tokens'],
    is_byok: usage['is_byok'], cost_details: usage['cost_details'],
    prompt_tokens_details: cached === undefined && written === undefined ? undefined : { cached_tokens: cached, cache_write_tokens: written },
  });
}
