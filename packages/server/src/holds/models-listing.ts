import { PriceFormatError, usdPriceToAtto, type priceBook } from '@metergate/db';

/** Entries of one /models answer read at most (OpenRouter lists a few hundred). */
const MODELS_MAX = 20_000;
const TOKENS_MAX = 100_000_000;

export interface ListingResult {
  prices: priceBook.PriceInput[];
  /** Models left out, with why (unparseable or "varies" prices such as openrouter/auto's "-1"). */
  skipped: Array<{ modelId: string; reason: string }>;
}

type Raw = Record<string, unknown>;
const isObject = (value: unknown): value is Raw => typeof value === 'object' && value !== null && !Array.isArray(value);

function tokens(value: unknown): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 && value <= TOKENS_MAX ? value : null;
}

/** An optional price: absent or null is 0; present must parse (prompt and completion are required). */
function price(pricing: Raw, field: string, required: boolean): bigint {
  const value = pricing[field];
  if (value === undefined || value === null) {
    if (required) throw new PriceFormatError(value, `pricing.${field} is missing`);
    return 0n;
  }
  if (typeof value !== 'string') throw new PriceFormatError(value, `pricing.${field} must be a decimal string`);
  return usdPriceToAtto(value);
}

function entry(model: Raw): priceBook.PriceInput {
  const modelId = model['id'];
  if (typeof modelId !== 'string' || modelId === '' || modelId.length > 256) throw new PriceFormatError(modelId, 'id must be a string');
  const pricing = model['pricing'];
  if (!isObject(pricing)) throw new PriceFormatError(pricing, 'pricing must be an object');
  const top = isObject(model['top_provider']) ? model['top_provider'] : {};
  return {
    modelId,
    promptAtto: price(pricing, 'prompt', true),
    completionAtto: price(pricing, 'completion', true),
    requestAtto: price(pricing, 'request', false),
    imageAtto: price(pricing, 'image', false),
    webSearchAtto: price(pricing, 'web_search', false),
    internalReasoningAtto: price(pricing, 'internal_reasoning', false),
    inputCacheReadAtto: price(pricing, 'input_cache_read', false),
    inputCacheWriteAtto: price(pricing, 'input_cache_write', false),
    contextLength: tokens(top['context_length']) ?? tokens(model['context_length']),
    maxCompletionTokens: tokens(top['max_completion_tokens']),
  };
}

/**
 * OpenRouter's GET /models body to price-book rows, exactly (USD strings → atto-USD). A model
 * whose prices cannot be read is skipped and reported, never priced at zero.
 */
export function parseModelsListing(body: unknown): ListingResult {
  if (!isObject(body) || !Array.isArray(body['data'])) throw new PriceFormatError(body, 'a /models answer has a data array');
  const data = body['data'] as unknown[];
  if (data.length > MODELS_MAX) throw new PriceFormatError(data.length, `more than ${MODELS_MAX} models`);
  const result: ListingResult = { prices: [], skipped: [] };
  for (const model of data) {
    const modelId = isObject(model) && typeof model['id'] === 'string' ? model['id'] : '?';
    try {
      if (!isObject(model)) throw new PriceFormatError(model, 'a model must be an object');
      result.prices.push(entry(model));
    } catch (error) {
      if (!(error instanceof PriceFormatError)) throw error;
      result.skipped.push({ modelId, reason: error.message });
    }
  }
  return result;
}
