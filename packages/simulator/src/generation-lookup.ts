import type { ServerResponse } from 'node:http';
import type { Books, Generation } from './books.js';
import { nowMs } from './clock.js';
import { usdNumber } from './money.js';
import { sendError, sendJson } from './respond.js';

/**
 * True once the lookup may answer: OpenRouter answers 404 while a generation runs and for a
 * while after it ends, which is exactly what a proxy reconciling costs must survive.
 */
function visible(generation: Generation): boolean {
  const { endedAtMs } = generation.record;
  return endedAtMs !== null && nowMs() >= endedAtMs + generation.lookup404Ms;
}

function lookupData(generation: Generation): Record<string, unknown> {
  const { record } = generation;
  const endedAtMs = record.endedAtMs ?? record.startedAtMs;
  const firstTokenAtMs = generation.firstTokenAtMs ?? endedAtMs;
  // With BYOK OpenRouter's total_cost is only its fee; the provider's charge is apart.
  const upstreamNano = record.upstreamInferenceNano;
  const totalCost = usdNumber(record.costNano - (upstreamNano ?? 0n));
  return {
    id: record.id,
    model: record.model,
    total_cost: totalCost,
    usage: totalCost,
    upstream_inference_cost: upstreamNano === null ? null : usdNumber(upstreamNano),
    is_byok: record.isByok,
    tokens_prompt: record.promptTokens,
    tokens_completion: record.completionTokens,
    native_tokens_prompt: record.promptTokens,
    native_tokens_completion: record.completionTokens,
    native_tokens_reasoning: 0,
    num_media_prompt: null,
    num_media_completion: null,
    cancelled: record.cancelled,
    streamed: record.stream,
    finish_reason: record.finishReason,
    native_finish_reason: record.finishReason,
    provider_name: generation.providerName,
    latency: Math.round(firstTokenAtMs - record.startedAtMs),
    generation_time: Math.round(endedAtMs - record.startedAtMs),
    moderation_latency: null,
    created_at: new Date(record.startedAtMs).toISOString(),
  };
}

/** GET /generation?id=... */
export function handleGenerationLookup(books: Books, url: URL, res: ServerResponse): void {
  const id = url.searchParams.get('id');
  const generation = id === null ? undefined : books.find(id);
  if (generation === undefined || !visible(generation)) {
    sendError(res, 404, 'Generation not found');
    return;
  }
  sendJson(res, 200, JSON.stringify({ data: lookupData(generation) }));
}
