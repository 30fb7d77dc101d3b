import { usageObject } from './billing.js';
import { completionBody, contentChunk, errorChunk, finishChunk, usageChunk } from './chunks.js';
import type { Format, Frame } from './format.js';
import { errorJson } from './respond.js';

const DONE: Frame = { data: '[DONE]' };

/** Chat completions, as OpenRouter streams them (openrouter-protocol.md). */
export function chatFormat(): Format {
  return {
    opening: () => [],
    content: (run, text) => ({ data: contentChunk(run, text) }),
    finish: (run, finishReason, usage) => {
      if (usage === null) return [{ data: finishChunk(run, finishReason) }, DONE];
      if (run.request.steering.usageInLastChoiceChunk) return [{ data: finishChunk(run, finishReason, usage) }, DONE];
      return [{ data: finishChunk(run, finishReason) }, { data: usageChunk(run, usage) }, DONE];
    },
    error: (run, usage) => [{ data: errorChunk(run, usage ?? undefined) }],
    body: completionBody,
    usage: (run, completionTokens, charge, withCost) => usageObject(run.request.promptTokens, completionTokens, charge, withCost),
    errorBody: (status, message, metadata) => errorJson(status, message, metadata),
  };
}
