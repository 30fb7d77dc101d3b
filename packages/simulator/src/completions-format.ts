import { usageObject } from './billing.js';
import type { ChatRun } from './chat-run.js';
import type { Format, Frame } from './format.js';
import { errorJson } from './respond.js';

const MID_STREAM_ERROR = { code: 502, message: 'Provider returned error' } as const;

/**
 * POST /completions (legacy): chat's framing with `choices[].text` (openrouter-endpoints.md
 * leaves the stream shape unconfirmed and says to assume chat's): a usage chunk with
 * `choices: []`, `data: [DONE]`, an error chunk with `finish_reason: "error"`.
 */
export function completionsFormat(): Format {
  const base = (run: ChatRun) => ({
    id: run.generation.record.id, provider: run.generation.providerName, model: run.request.model.id,
    object: 'text_completion', created: run.created,
  });
  const choice = (text: string, finishReason: string | null) => ({ index: 0, text, finish_reason: finishReason, logprobs: null });
  return {
    opening: () => [],
    content: (run, text) => ({ data: JSON.stringify({ ...base(run), choices: [choice(text, null)] }) }),
    finish: (run, finishReason, usage) => {
      const frames: Frame[] = [{ data: JSON.stringify({ ...base(run), choices: [choice('', finishReason)] }) }];
      if (usage !== null) frames.push({ data: JSON.stringify({ ...base(run), choices: [], usage }) });
      frames.push({ data: '[DONE]' });
      return frames;
    },
    error: (run, usage) => [{ data: JSON.stringify({ ...base(run), error: MID_STREAM_ERROR, choices: [choice('', 'error')], ...(usage === null ? {} : { usage }) }) }],
    body: (run, content, finishReason, usage) => JSON.stringify({
      ...base(run), choices: [choice(content, finishReason)],
      ...(finishReason === 'error' ? { error: MID_STREAM_ERROR } : {}), ...(usage === undefined ? {} : { usage }),
    }),
    usage: (run, completionTokens, charge, withCost) => usageObject(run.request.promptTokens, completionTokens, charge, withCost),
    errorBody: (status, message, metadata) => errorJson(status, message, metadata),
  };
}
