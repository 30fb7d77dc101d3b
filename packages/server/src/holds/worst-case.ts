import { attoToNanoCeil, usdPriceToAtto, type ModelPrice } from '@metergate/db';

/**
 * The worst-case cost of a chat completion, before it is sent: an upper bound on what the
 * upstream can bill for it, in exact integer atto-USD, rounded up to nano-USD at the end.
 *
 *   prompt bound × max(prompt, input_cache_read, input_cache_write)
 *   + completion budget × max(completion, internal_reasoning)
 *   + request + images × image + searches × per-search fee
 *
 * Prompt bound: the UTF-8 bytes of the body as sent, image parts left out (a token is at least
 * one byte of the text it covers; the JSON around the text only adds bytes), plus
 * PROMPT_TOKENS_PER_MESSAGE for each message (chat-template tokens), PROMPT_TOKENS_PER_REQUEST,
 * and PROMPT_TOKENS_PER_IMAGE for each image; never more than the model's context length.
 * A request with files or audio, or with web search (whose results add prompt tokens), is
 * bounded by the context length itself.
 * Completion budget: max_completion_tokens / max_tokens (+ reasoning.max_tokens when sent too),
 * capped by the model's output limit; without one, the model's output limit
 * (top_provider.max_completion_tokens, else context length − prompt bound).
 * With a `models` fallback list, the bound is the largest over every model that may serve.
 */

/** Chat-template tokens around each message (role markers, separators: 3–7 in OpenAI's and Llama's templates). */
export const PROMPT_TOKENS_PER_MESSAGE = 16n;
/** Tokens a template adds once per request (priming the assistant turn, system preamble). */
export const PROMPT_TOKENS_PER_REQUEST = 64n;
/**
 * Prompt tokens one image can cost where it is billed as tokens: OpenAI high detail ≤ 1,105,
 * Claude ≤ ~1,600, GPT-4.1-mini patches ≤ 2,489; 3,000 covers them.
 */
export const PROMPT_TOKENS_PER_IMAGE = 3_000n;
/**
 * Upper bound of one web search's fee when the model lists none (Exa $0.007–0.015 for 10
 * results, Parallel $0.001–0.005, Perplexity $0.005; ../shared/openrouter-endpoints.md), plus
 * $0.001 per result beyond 10.
 */
export const WEB_SEARCH_ATTO = usdPriceToAtto('0.02');
export const WEB_SEARCH_RESULT_ATTO = usdPriceToAtto('0.001');
/** The server tool searches at most max_uses times, within max_tool_calls (≤ 30). */
export const WEB_SEARCHES_MAX = 30n;

export interface CostShape {
  /** Everything but the completion: prompt bound, request, images, searches (atto-USD). */
  fixedAtto: bigint;
  /** Per completion token: max(completion, internal_reasoning), over every model that may serve. */
  completionAtto: bigint;
  promptTokensBound: bigint;
  /** The most output tokens any model that may serve will produce, when known. */
  completionLimit: bigint | null;
  /** What the client asked for (max_completion_tokens / max_tokens + reasoning.max_tokens), if anything. */
  clientBudget: bigint | null;
}

export type Pricing = { priced: true; shape: CostShape } | { priced: false; reason: string };

type Raw = Record<string, unknown>;
const isObject = (value: unknown): value is Raw => typeof value === 'object' && value !== null && !Array.isArray(value);

/** The worst-case upstream cost for a completion budget, in nano-USD, rounded up. */
export function worstCaseNano(shape: CostShape, completionBudget: bigint): bigint {
  return attoToNanoCeil(shape.fixedAtto + completionBudget * shape.completionAtto);
}

/**
 * The budget a hold is computed with: the client's (capped by the model's limit), else the
 * model's limit, else null (no bound can be given: the caller falls back or refuses).
 */
export function defaultBudget(shape: CostShape): bigint | null {
  if (shape.clientBudget !== null) return shape.completionLimit === null ? shape.clientBudget : min(shape.clientBudget, shape.completionLimit);
  return shape.completionLimit;
}

/**
 * The largest completion budget whose worst case fits `spareUpstreamNano`, capped by the
 * model's limit; null when not even the prompt fits.
 */
export function affordableBudget(shape: CostShape, spareUpstreamNano: bigint): bigint | null {
  const spareAtto = spareUpstreamNano * 1_000_000_000n - shape.fixedAtto;
  if (spareAtto < 0n) return null;
  if (shape.completionAtto === 0n) return shape.completionLimit;
  const fits = spareAtto / shape.completionAtto;
  return shape.completionLimit === null ? fits : min(fits, shape.completionLimit);
}

/**
 * A model id without its OpenRouter variant suffix (`openai/gpt-4o:online` → `openai/gpt-4o`):
 * variants cost the base price or less (`:free`, `:floor`), and `:online`'s search fee is added
 * by the rule above.
 */
export function baseModelId(id: string): string {
  const colon = id.indexOf(':');
  return colon > 0 ? id.slice(0, colon) : id;
}

/** Every model that may serve the request: `model` and the `models` fallback list. */
export function candidateModels(body: Raw): string[] {
  const ids = new Set<string>();
  if (typeof body['model'] === 'string') ids.add(body['model']);
  if (Array.isArray(body['models'])) for (const id of body['models']) if (typeof id === 'string') ids.add(id);
  return [...ids];
}

export function priceRequest(body: Raw, lookup: (modelId: string) => ModelPrice | undefined): Pricing {
  const ids = candidateModels(body);
  if (ids.length === 0) return { priced: false, reason: 'the request names no model, so its price is not known' };
  const content = contentOf(body);
  const searches = webSearches(body, ids);
  let shape: CostShape | null = null;
  for (const id of ids) {
    const price = lookup(id) ?? lookup(baseModelId(id));
    if (price === undefined) return { priced: false, reason: `the price of model ${JSON.stringify(id)} is not known` };
    const one = shapeFor(price, content, searches, clientBudget(body));
    if (one === null) return { priced: false, reason: `model ${JSON.stringify(id)} has no known context or output limit` };
    shape = shape === null ? one : widest(shape, one);
  }
  return { priced: true, shape: shape! };
}

interface Content { textBytes: bigint; messages: bigint; images: bigint; opaque: boolean }
interface Searches { count: bigint; resultsOver10: bigint }

function shapeFor(price: ModelPrice, content: Content, searches: Searches, budget: bigint | null): CostShape | null {
  const context = price.contextLength === null ? null : BigInt(price.contextLength);
  let prompt = content.textBytes + content.messages * PROMPT_TOKENS_PER_MESSAGE + PROMPT_TOKENS_PER_REQUEST + content.images * PROMPT_TOKENS_PER_IMAGE;
  if (content.opaque || searches.count > 0n) {
    if (context === null) return null;
    prompt = context;
  } else if (context !== null) {
    prompt = min(prompt, context);
  }
  const listed = price.maxCompletionTokens === null ? null : BigInt(price.maxCompletionTokens);
  const limit = listed ?? (context === null ? null : max(1n, context - prompt));
  const promptAtto = max(price.promptAtto, max(price.inputCacheReadAtto, price.inputCacheWriteAtto));
  const perSearch = max(price.webSearchAtto, WEB_SEARCH_ATTO) + searches.resultsOver10 * WEB_SEARCH_RESULT_ATTO;
  return {
    fixedAtto: prompt * promptAtto + price.requestAtto + content.images * price.imageAtto + searches.count * perSearch,
    completionAtto: max(price.completionAtto, price.internalReasoningAtto),
    promptTokensBound: prompt,
    completionLimit: limit,
    clientBudget: budget,
  };
}

function widest(a: CostShape, b: CostShape): CostShape {
  return {
    fixedAtto: max(a.fixedAtto, b.fixedAtto),
    completionAtto: max(a.completionAtto, b.completionAtto),
    promptTokensBound: max(a.promptTokensBound, b.promptTokensBound),
    completionLimit: a.completionLimit === null || b.completionLimit === null ? null : max(a.completionLimit, b.completionLimit),
    clientBudget: a.clientBudget,
  };
}

function positiveInt(value: unknown): bigint | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? BigInt(value) : null;
}

/** max_completion_tokens (or the deprecated max_tokens), plus reasoning.max_tokens when sent too. */
export function clientBudget(body: Raw): bigint | null {
  const output = positiveInt(body['max_completion_tokens']) ?? positiveInt(body['max_tokens']);
  if (output === null) return null;
  const reasoning = isObject(body['reasoning']) ? positiveInt(body['reasoning']['max_tokens']) : null;
  return output + (reasoning ?? 0n);
}

const IMAGE_PART_TYPES = new Set(['image_url', 'input_image', 'image']);
const OPAQUE_PART_TYPES = new Set(['file', 'input_file', 'input_audio', 'audio', 'document']);

/** Bytes of the body with image parts taken out (counted apart), messages, and whether anything is not text. */
function contentOf(body: Raw): Content {
  let images = 0n;
  let opaque = false;
  const text = JSON.stringify(body, (_key, value: unknown) => {
    if (isObject(value) && typeof value['type'] === 'string') {
      if (IMAGE_PART_TYPES.has(value['type'])) { images += 1n; return null; }
      if (OPAQUE_PART_TYPES.has(value['type'])) opaque = true;
    }
    return value;
  });
  const messages = Array.isArray(body['messages']) ? BigInt(body['messages'].length) : 0n;
  return { textBytes: BigInt(Buffer.byteLength(text, 'utf8')), messages, images, opaque };
}

/** Searches the request asks for: the web plugin, `:online`, web_search_options, the server tool. */
function webSearches(body: Raw, ids: string[]): Searches {
  let count = 0n;
  let resultsMax = 0n;
  const plugins = Array.isArray(body['plugins']) ? body['plugins'].filter(isObject) : [];
  for (const plugin of plugins) {
    if (plugin['id'] !== 'web') continue;
    count += 1n;
    resultsMax = max(resultsMax, positiveInt(plugin['max_results']) ?? 5n);
  }
  if (ids.some((id) => id.endsWith(':online'))) count += 1n;
  if (body['web_search_options'] !== undefined) count += 1n;
  const tools = Array.isArray(body['tools']) ? body['tools'].filter(isObject) : [];
  for (const tool of tools) {
    if (tool['type'] !== 'openrouter:web_search' && tool['type'] !== 'web_search' && tool['type'] !== 'web_search_preview') continue;
    const params = isObject(tool['parameters']) ? tool['parameters'] : tool;
    count += min(positiveInt(params['max_uses']) ?? WEB_SEARCHES_MAX, WEB_SEARCHES_MAX);
    resultsMax = max(resultsMax, positiveInt(params['max_results']) ?? 10n);
  }
  return { count: min(count, WEB_SEARCHES_MAX + 3n), resultsOver10: max(0n, resultsMax - 10n) };
}

function min(a: bigint, b: bigint): bigint { return a < b ? a : b; }
function max(a: bigint, b: bigint): bigint { return a > b ? a : b; }
