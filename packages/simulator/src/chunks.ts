import type { ChatRun } from './chat-run.js';

// Builders for the JSON bodies OpenRouter sends for chat completions, streaming or not.

const MID_STREAM_ERROR = { code: 502, message: 'Provider returned error' } as const;

function base(run: ChatRun, object: string): Record<string, unknown> {
  return {
    id: run.generation.record.id,
    provider: run.generation.providerName,
    model: run.request.model.id,
    object,
    created: run.created,
  };
}

export function contentChunk(run: ChatRun, content: string): string {
  return JSON.stringify({
    ...base(run, 'chat.completion.chunk'),
    choices: [{
      index: 0,
      delta: { role: 'assistant', content },
      finish_reason: null,
      native_finish_reason: null,
      logprobs: null,
    }],
  });
}

/** The empty-content chunk carrying the finish reason; usage rides on it when steered so. */
export function finishChunk(run: ChatRun, finishReason: string, usage?: Record<string, unknown>): string {
  const chunk: Record<string, unknown> = {
    ...base(run, 'chat.completion.chunk'),
    choices: [{
      index: 0,
      delta: { role: 'assistant', content: '' },
      finish_reason: finishReason,
      native_finish_reason: finishReason,
      logprobs: null,
    }],
  };
  if (usage) chunk['usage'] = usage;
  return JSON.stringify(chunk);
}

export function usageChunk(run: ChatRun, usage: Record<string, unknown>): string {
  return JSON.stringify({ ...base(run, 'chat.completion.chunk'), choices: [], usage });
}

/** The mid-stream error event: HTTP status stays 200, the stream ends after it. */
export function errorChunk(run: ChatRun, usage?: Record<string, unknown>): string {
  const chunk: Record<string, unknown> = {
    ...base(run, 'chat.completion.chunk'),
    error: MID_STREAM_ERROR,
    choices: [{
      index: 0,
      delta: { content: '' },
      finish_reason: 'error',
      native_finish_reason: 'error',
    }],
  };
  if (usage) chunk['usage'] = usage;
  return JSON.stringify(chunk);
}

/**
 * The non-streaming body. An error during generation is still a 200 with the partial
 * message, finish_reason "error" and a top-level `error`, as OpenRouter documents.
 */
export function completionBody(
  run: ChatRun,
  content: string,
  finishReason: string,
  usage: Record<string, unknown> | undefined,
): string {
  const body: Record<string, unknown> = {
    ...base(run, 'chat.completion'),
    // OpenAI's chat.completion object has it (null when unknown); the official @openrouter/sdk requires the key.
    system_fingerprint: null,
    choices: [{
      index: 0,
      logprobs: null,
      finish_reason: finishReason,
      native_finish_reason: finishReason,
      message: { role: 'assistant', content, refusal: null, reasoning: null },
    }],
  };
  if (finishReason === 'error') body['error'] = MID_STREAM_ERROR;
  if (usage) body['usage'] = usage;
  return JSON.stringify(body);
}
