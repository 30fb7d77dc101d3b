import type { ServerResponse } from 'node:http';
import { settleGeneration } from './billing.js';
import type { ChatDeps } from './chat.js';
import { sleep } from './clock.js';
import { newGenerationId } from './ids.js';
import { usdNumber } from './money.js';
import { EMBEDDING_MODELS, findEmbeddingModel } from './models.js';
import { countPromptTokens, countTextTokens } from './prompt.js';
import { errorJson, sendJson } from './respond.js';
import { isObject, resolveSteering, SteeringError } from './steering.js';

/** Length of every vector served (the `dimensions` field can ask for fewer). */
const DIMENSIONS_MAX = 8;

class EmbeddingsError extends Error {}

/** The inputs: a string, strings, token arrays, or `[{"content": [...]}]`; a 400 otherwise. */
function inputsOf(input: unknown): { count: number; tokens: number } {
  const list = Array.isArray(input) ? input : [input];
  if (list.length === 0) throw new EmbeddingsError('Input required: specify "input"');
  if (list.every((item) => typeof item === 'string')) return { count: list.length, tokens: countTextTokens(list) };
  if (list.every((item) => typeof item === 'number')) return { count: 1, tokens: Math.max(1, list.length) };
  if (list.every((item) => Array.isArray(item) && item.every((token) => typeof token === 'number'))) {
    return { count: list.length, tokens: Math.max(1, list.reduce((sum: number, item: number[]) => sum + item.length, 0)) };
  }
  if (list.every(isObject)) return { count: list.length, tokens: countPromptTokens(list) };
  throw new EmbeddingsError('"input" must be a string, strings, token arrays or content items');
}

function vector(index: number, dimensions: number, base64: boolean): number[] | string {
  const values = Array.from({ length: dimensions }, (_v, at) => Math.fround(Math.sin(index + at + 1) / 2));
  return base64 ? Buffer.from(new Float32Array(values).buffer).toString('base64') : values;
}

/** POST /embeddings: never streams; billed per input token, in the books like any generation. */
export async function handleEmbeddings(deps: ChatDeps, body: unknown, res: ServerResponse): Promise<void> {
  if (!isObject(body)) return sendJson(res, 400, errorJson(400, 'Request body must be a JSON object'));
  const id = typeof body['model'] === 'string' ? body['model'] : EMBEDDING_MODELS[0]!.id;
  const model = findEmbeddingModel(id);
  if (model === undefined) return sendJson(res, 400, errorJson(400, `${id} is not a valid embedding model ID`));
  let parsed: { count: number; tokens: number };
  let steering;
  try {
    parsed = inputsOf(body['input']);
    steering = resolveSteering(deps.defaults, body['sim']);
  } catch (error) {
    if (!(error instanceof EmbeddingsError) && !(error instanceof SteeringError)) throw error;
    return sendJson(res, 400, errorJson(400, error.message));
  }
  const promptTokens = steering.promptTokens ?? parsed.tokens;
  const generation = deps.books.open({
    id: newGenerationId(), model: model.id, providerName: model.providerName, user: typeof body['user'] === 'string' ? body['user'] : null,
    stream: false, promptTokens, lookup404Ms: steering.lookup404Ms ?? deps.lookup404Ms, isByok: steering.byok,
  });
  const headers = { 'X-Generation-Id': generation.record.id };
  const failure = steering.errorBefore;
  if (failure !== null) {
    settleGeneration(deps.books, generation, model, { completionTokens: 0, finishReason: 'error', cancelled: false });
    return sendJson(res, failure.status, errorJson(failure.status, failure.message ?? 'Provider returned error', failure.metadata), headers);
  }
  // Like a non-streaming generation: the client leaving does not stop it; only shutdown does.
  await sleep(steering.latencyMs, generation.stop.signal);
  const cancelled = generation.stop.signal.aborted;
  const charge = settleGeneration(deps.books, generation, model, { completionTokens: 0, finishReason: cancelled ? null : 'stop', cancelled });
  if (cancelled) return void res.destroy();
  const requested = typeof body['dimensions'] === 'number' && Number.isInteger(body['dimensions']) ? body['dimensions'] : DIMENSIONS_MAX;
  const dimensions = Math.min(DIMENSIONS_MAX, Math.max(1, requested));
  const base64 = body['encoding_format'] === 'base64';
  const usage: Record<string, unknown> = { prompt_tokens: promptTokens, total_tokens: promptTokens };
  if (!steering.omitUsage) usage['cost'] = usdNumber(charge.costNano);
  usage['is_byok'] = charge.upstreamInferenceNano !== null;
  usage['cost_details'] = {
    upstream_inference_cost: charge.upstreamInferenceNano === null ? null : usdNumber(charge.upstreamInferenceNano),
    upstream_inference_prompt_cost: usdNumber(charge.promptNano), upstream_inference_completions_cost: 0,
  };
  sendJson(res, 200, JSON.stringify({
    id: `embd-${generation.record.id.slice(4)}`, object: 'list', model: model.id, provider: model.providerName,
    data: Array.from({ length: parsed.count }, (_v, index) => ({ object: 'embedding', index, embedding: vector(index, dimensions, base64) })),
    usage,
  }), headers);
}
