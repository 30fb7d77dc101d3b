import { formatUsd } from './money.js';

/** Per-token and per-request prices in integer nano-USD. */
export interface Price {
  readonly promptNano: bigint;
  readonly completionNano: bigint;
  readonly requestNano: bigint;
}

export interface ModelSpec {
  readonly id: string;
  readonly name: string;
  readonly providerName: string;
  readonly contextLength: number;
  readonly maxCompletionTokens: number | null;
  readonly price: Price;
}

export const DEFAULT_MODEL_ID = 'openai/gpt-4o-mini';

function price(promptNano: bigint, completionNano: bigint, requestNano = 0n): Price {
  return { promptNano, completionNano, requestNano };
}

export const MODELS: readonly ModelSpec[] = [
  {
    id: 'openai/gpt-4o', name: 'OpenAI: GPT-4o', providerName: 'OpenAI',
    contextLength: 128_000, maxCompletionTokens: 16_384, price: price(2_500n, 10_000n),
  },
  {
    id: 'openai/gpt-4o-mini', name: 'OpenAI: GPT-4o-mini', providerName: 'OpenAI',
    contextLength: 128_000, maxCompletionTokens: 16_384, price: price(150n, 600n),
  },
  {
    id: 'anthropic/claude-sonnet-4', name: 'Anthropic: Claude Sonnet 4', providerName: 'Anthropic',
    contextLength: 200_000, maxCompletionTokens: 64_000, price: price(3_000n, 15_000n),
  },
  {
    id: 'meta-llama/llama-3.1-8b-instruct', name: 'Meta: Llama 3.1 8B Instruct',
    providerName: 'DeepInfra', contextLength: 131_072, maxCompletionTokens: 8_192,
    price: price(20n, 50n),
  },
  {
    // The only model with a per-request price, so the proxy's handling of it gets exercised.
    id: 'perplexity/sonar', name: 'Perplexity: Sonar', providerName: 'Perplexity',
    contextLength: 127_072, maxCompletionTokens: null, price: price(1_000n, 1_000n, 5_000_000n),
  },
];

const MODELS_BY_ID = new Map(MODELS.map((model) => [model.id, model]));

/**
 * Embedding models: priced per input token, no output. GET /models lists them only with
 * `output_modalities=embeddings` or `all` (openrouter-endpoints.md); /embeddings serves only them.
 */
export const EMBEDDING_MODELS: readonly ModelSpec[] = [
  {
    id: 'openai/text-embedding-3-small', name: 'OpenAI: Text Embedding 3 Small', providerName: 'OpenAI',
    contextLength: 8_192, maxCompletionTokens: null, price: price(20n, 0n),
  },
];

export function findEmbeddingModel(id: string): ModelSpec | undefined {
  return EMBEDDING_MODELS.find((model) => model.id === id);
}

export function findModel(id: string): ModelSpec | undefined {
  return MODELS_BY_ID.get(id);
}

/** Full price of a generation; zero-output failures are not charged (see billing.ts). */
export function priceOf(model: ModelSpec, promptTokens: number, completionTokens: number): bigint {
  const { promptNano, completionNano, requestNano } = model.price;
  return BigInt(promptTokens) * promptNano + BigInt(completionTokens) * completionNano + requestNano;
}

function listingEntry(model: ModelSpec, output = 'text'): Record<string, unknown> {
  return {
    id: model.id,
    canonical_slug: model.id,
    name: model.name,
    created: 1_700_000_000,
    context_length: model.contextLength,
    architecture: { modality: `text->${output}`, input_modalities: ['text'], output_modalities: [output] },
    top_provider: {
      context_length: model.contextLength,
      max_completion_tokens: model.maxCompletionTokens,
      is_moderated: false,
    },
    pricing: {
      prompt: formatUsd(model.price.promptNano),
      completion: formatUsd(model.price.completionNano),
      request: formatUsd(model.price.requestNano),
      image: '0',
      web_search: '0',
      internal_reasoning: '0',
      input_cache_read: '0',
      input_cache_write: '0',
    },
  };
}

/** The body of GET /models, serialized once: the list never changes. */
export const MODELS_LISTING_JSON = JSON.stringify({ data: MODELS.map((model) => listingEntry(model)) });

const EMBEDDINGS_LISTING = EMBEDDING_MODELS.map((model) => listingEntry(model, 'embeddings'));

/** GET /models?output_modalities=…: text models by default, embeddings or both on request. */
export function modelsListingJson(outputModalities: string | null): string {
  if (outputModalities === 'embeddings') return JSON.stringify({ data: EMBEDDINGS_LISTING });
  if (outputModalities === 'all') return JSON.stringify({ data: [...MODELS.map((model) => listingEntry(model)), ...EMBEDDINGS_LISTING] });
  return MODELS_LISTING_JSON;
}
