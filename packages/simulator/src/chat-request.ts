import { DEFAULT_MODEL_ID, findModel, type ModelSpec } from './models.js';
import { countPromptTokens } from './prompt.js';
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

/** max_completion_tokens, or the deprecated max_tokens; null when absent or unusable. */
function maxTokens(body: Record<string, unknown>): number | null {
  const value = body['max_completion_tokens'] ?? body['max_tokens'];
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : null;
}

/** Throws RequestError (an HTTP 400) on anything OpenRouter would reject. */
export function parseChatRequest(body: unknown, defaults: unknown): ChatRequest {
  if (!isObject(body)) throw new RequestError('Request body must be a JSON object');
  const messages = body['messages'];
  if (!Array.isArray(messages) || messages.length === 0 || !messages.every(isObject)) {
    throw new RequestError('Input required: specify "messages" (a non-empty array of objects)');
  }
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
  const limit = maxTokens(body);
  const truncated = limit !== null && limit < steering.completionTokens;
  const user = body['user'];
  return {
    model,
    stream: body['stream'] === true,
    user: typeof user === 'string' ? user : null,
    promptTokens: steering.promptTokens ?? countPromptTokens(messages),
    plannedTokens: truncated ? limit : steering.completionTokens,
    plannedFinish: truncated ? 'length' : 'stop',
    steering,
  };
}
