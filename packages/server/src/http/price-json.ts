import { formatAttoUsd, type ModelPrice } from '@metergate/db';

/** A price-book row as GET/PUT /admin/prices and `metergate prices` show it: USD strings per unit, exact. */
export function priceJson(p: ModelPrice) {
  return {
    model: p.modelId, prompt: formatAttoUsd(p.promptAtto), completion: formatAttoUsd(p.completionAtto),
    request: formatAttoUsd(p.requestAtto), image: formatAttoUsd(p.imageAtto), web_search: formatAttoUsd(p.webSearchAtto),
    internal_reasoning: formatAttoUsd(p.internalReasoningAtto), input_cache_read: formatAttoUsd(p.inputCacheReadAtto),
    input_cache_write: formatAttoUsd(p.inputCacheWriteAtto), context_length: p.contextLength,
    max_completion_tokens: p.maxCompletionTokens, source: p.source, note: p.note, updated_at: p.updatedAt.toISOString(),
  };
}

