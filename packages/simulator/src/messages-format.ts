import { usdNumber } from './money.js';
import type { ChatRun } from './chat-run.js';
import type { Format, Frame } from './format.js';

/** OpenRouter's error statuses to Anthropic's error types (openrouter-endpoints.md). */
export function anthropicErrorType(status: number): string {
  if (status === 400 || status === 413 || status === 422) return 'invalid_request_error';
  if (status === 401) return 'authentication_error';
  if (status === 402) return 'billing_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status === 503 || status === 529) return 'overloaded_error';
  return 'api_error';
}

/**
 * POST /messages in Anthropic's format: named events (`event:` + `data:`), cumulative usage on
 * `message_delta` without `cost` (the spec's streamed usage has none: a proxy must look the cost
 * up), the stream ends at `message_stop`. The non-streaming body's usage carries `cost`.
 */
export function messagesFormat(): Format {
  const named = (event: string, body: Record<string, unknown>): Frame => ({ event, data: JSON.stringify({ type: event, ...body }) });
  const id = (run: ChatRun) => `msg_${run.generation.record.id.slice(4)}`;
  const tokens = (run: ChatRun, output: number) => ({
    input_tokens: run.request.promptTokens, output_tokens: output, cache_creation_input_tokens: 0, cache_read_input_tokens: 0,
  });
  const stopReason = (finishReason: string) => (finishReason === 'length' ? 'max_tokens' : finishReason === 'stop' ? 'end_turn' : null);
  let produced = 0;
  return {
    opening: (run) => [
      named('message_start', { message: {
        id: id(run), type: 'message', role: 'assistant', model: run.request.model.id, content: [],
        stop_reason: null, stop_sequence: null, usage: tokens(run, 0),
      } }),
      named('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
      named('ping', {}),
    ],
    content: (_run, text) => {
      produced += 1;
      return named('content_block_delta', { index: 0, delta: { type: 'text_delta', text } });
    },
    finish: (run, finishReason) => [
      named('content_block_stop', { index: 0 }),
      named('message_delta', { delta: { stop_reason: stopReason(finishReason), stop_sequence: null }, usage: tokens(run, produced) }),
      named('message_stop', {}),
    ],
    error: (run) => [named('error', { error: { type: 'api_error', message: 'Provider returned error', error_type: 'provider_error' }, request_id: run.generation.record.id })],
    body: (run, content, finishReason, usage) => {
      const body: Record<string, unknown> = {
        id: id(run), type: 'message', role: 'assistant', model: run.request.model.id,
        content: [{ type: 'text', text: content }], stop_reason: stopReason(finishReason), stop_sequence: null,
        usage: usage ?? tokens(run, 0),
      };
      // As OpenRouter documents for chat: an error during generation is a 200 with the partial output.
      if (finishReason === 'error') body['error'] = { type: 'api_error', message: 'Provider returned error' };
      return JSON.stringify(body);
    },
    usage: (run, completionTokens, charge, withCost) => {
      const usage: Record<string, unknown> = tokens(run, completionTokens);
      if (withCost) usage['cost'] = usdNumber(charge.costNano);
      usage['is_byok'] = charge.upstreamInferenceNano !== null;
      usage['cost_details'] = {
        upstream_inference_cost: charge.upstreamInferenceNano === null ? null : usdNumber(charge.upstreamInferenceNano),
        upstream_inference_prompt_cost: usdNumber(charge.promptNano),
        upstream_inference_completions_cost: usdNumber(charge.completionsNano),
      };
      return usage;
    },
    errorBody: (status, message, _metadata, generationId) => JSON.stringify({
      type: 'error', error: { type: anthropicErrorType(status), message }, request_id: generationId,
    }),
  };
}
