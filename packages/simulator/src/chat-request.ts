import { DEFAULT_MODEL_ID, findModel, type ModelSpec } from './models.js';
import { countPromptTokens, countTextTokens } from './prompt.js';
import { isObject, resolveSteering, SteeringError, type Steering } from './steering.js';

/** A validated chat completion request, with the plan of what the simulator will generate. */
export interface ChatRequest {
  model: ModelSpec;
  stream: boolean;
  user: string | null;
  promptTokens: number;
  /** Tokens the generation will produce if nothing interrupts it. */
  plannedTokens: number;
  /** "length" when max_tokens cut the steered completion short. */
  plannedFinish: 'stop' | 'length';
  steering: Steering;
}

export class RequestError extends Error {}

function modelId(body: Record<string, unknown>): string {
  const model = body['model'];
  if (typeof model === 'string' && model !== '') return model;
  // OpenRouter's fallback list: without `model`, the first entry is tried first.
  const models = body['models'];
  if (Array.isArray(models) && typeof models[0] === 'string') return models[0];
  return DEFAULT_MODEL_ID;
}

/** The generating endpoints; each reads its own input and output-limit fields. */
export type SimEndpoint = 'chat' | 'responses' | 'messages' | 'completions';

/**
 * The output limit the endpoint's client sent (chat: max_completion_tokens or the deprecated
 * max_tokens; responses: max_output_tokens; messages and completions: max_tokens); null when
 * absent or unusable.
 */
function maxTokens(body: Record<string, unknown>, endpoint: SimEndpoint): number | null {
  const value = endpoint === 'chat' ? body['max_completion_tokens'] ?? body['max_tokens']
    : endpoint === 'responses' ? body['max_output_tokens'] : body['max_tokens'];
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : null;
}

/** Throws RequestError (an HTTP 400) on anything OpenRouter would reject. */
export function parseChatRequest(body: unknown, defaults: unknown, endpoint: SimEndpoint = 'chat'): ChatRequest {
  if (!isObject(body)) throw new RequestError('Request body must be a JSON object');
  const promptTokens = promptTokensOf(body, endpoint);
  const id = modelId(body);
  const model = findModel(id);
  if (model === undefined) throw new RequestError(`${id} is not a valid model ID`);
  let steering: Steering;
  try {
    steering = resolveSteering(defaults, body['sim']);
  } catch (error) {
    if (error instanceof SteeringError) throw new RequestError(error.message);
    throw error;
  }
  const limit = maxTokens(body, endpoint);
  const truncated = limit !== null && limit < steering.completionTokens;
  const user = body['user'];
  return {
    model,
    stream: body['stream'] === true,
    user: typeof user === 'string' ? user : null,
    promptTokens: steering.promptTokens ?? promptTokens,
    plannedTokens: truncated ? limit : steering.completionTokens,
    plannedFinish: truncated ? 'length' : 'stop',
    steering,
  };
}

/** Validates the endpoint's required input (a 400 otherwise) and estimates its prompt tokens. */
function promptTokensOf(body: Record<string, unknown>, endpoint: SimEndpoint): number {
  if (endpoint === 'responses') {
    if (body['store'] === true || body['previous_response_id'] !== undefined) {
      throw new RequestError('Stateful responses are not supported: store must be false and previous_response_id absent');
    }
    const input = body['input'];
    if (typeof input === 'string') return countTextTokens([input, body['instructions']]);
    if (!Array.isArray(input) || input.length === 0 || !input.every(isObject)) {
      throw new RequestError('Input required: specify "input" (a string or a non-empty array of items)');
    }
    // Items carry a string or `input_text` parts: counted as chat counts `text` parts.
    return countPromptTokens([{ content: body['instructions'] }, ...input.map((item) => ({ content: textParts(item['content']) }))]);
  }
  if (endpoint === 'completions') {
    const prompt = body['prompt'];
    const parts = typeof prompt === 'string' ? [prompt] : Array.isArray(prompt) && prompt.every((p) => typeof p === 'string') ? prompt : null;
    if (parts === null || parts.length === 0) throw new RequestError('Input required: specify "prompt" (a string or an array of strings)');
    return countTextTokens(parts);
  }
  const messages = body['messages'];
  if (!Array.isArray(messages) || messages.length === 0 || !messages.every(isObject)) {
    throw new RequestError('Input required: specify "messages" (a non-empty array of objects)');
  }
  // Anthropic's `system` (a string or text blocks) is prompt too.
  return endpoint === 'messages' && body['system'] !== undefined ? countPromptTokens([{ content: body['system'] }, ...messages]) : countPromptTokens(messages);
}

function textParts(content: unknown): unknown {
  if (!Array.isArray(content)) return content;
  return content.map((part) => (isObject(part) && part['type'] === 'input_text' ? { ...part, type: 'text' } : part));
}
