import { usdNumber } from './money.js';
import type { ChatRun } from './chat-run.js';
import type { Format, Frame } from './format.js';
import { errorJson } from './respond.js';

const FAILURE = { code: 'server_error', message: 'Provider returned error' } as const;

/**
 * POST /responses (openrouter-endpoints.md): `data:` events keyed on `type` with a
 * `sequence_number`, no `event:` lines, usage (with cost) on the terminal event that carries
 * the whole response, then `data: [DONE]`. Body ids (`resp_…`, `msg_…`) differ from the
 * generation id, which comes only in the X-Generation-Id header.
 */
export function responsesFormat(): Format {
  let sequence = 0;
  const frame = (event: Record<string, unknown>): Frame => ({ data: JSON.stringify({ ...event, sequence_number: sequence++ }) });
  const ids = (run: ChatRun) => ({ response: `resp_${run.generation.record.id.slice(4)}`, item: `msg_${run.generation.record.id.slice(4)}` });
  const item = (run: ChatRun, text: string, status: string) => ({
    type: 'message', id: ids(run).item, status, role: 'assistant',
    content: status === 'in_progress' ? [] : [{ type: 'output_text', text, annotations: [] }],
  });
  const response = (run: ChatRun, status: string, output: unknown[], usage: Record<string, unknown> | null, extra: Record<string, unknown> = {}) => ({
    id: ids(run).response, object: 'response', created_at: run.created, model: run.request.model.id, status,
    output, usage, error: null, incomplete_details: null, ...extra,
  });
  const place = (run: ChatRun) => ({ item_id: ids(run).item, output_index: 0, content_index: 0 });
  let text = '';
  return {
    opening: (run) => [
      frame({ type: 'response.created', response: response(run, 'in_progress', [], null) }),
      frame({ type: 'response.in_progress', response: response(run, 'in_progress', [], null) }),
      frame({ type: 'response.output_item.added', output_index: 0, item: item(run, '', 'in_progress') }),
      frame({ type: 'response.content_part.added', ...place(run), part: { type: 'output_text', text: '', annotations: [] } }),
    ],
    content: (run, delta) => {
      text += delta;
      return frame({ type: 'response.output_text.delta', ...place(run), delta });
    },
    finish: (run, finishReason, usage) => {
      const status = finishReason === 'length' ? 'incomplete' : 'completed';
      const extra = finishReason === 'length' ? { incomplete_details: { reason: 'max_output_tokens' } } : {};
      return [
        frame({ type: 'response.output_text.done', ...place(run), text }),
        frame({ type: 'response.content_part.done', ...place(run), part: { type: 'output_text', text, annotations: [] } }),
        frame({ type: 'response.output_item.done', output_index: 0, item: item(run, text, 'completed') }),
        frame({ type: `response.${status}`, response: response(run, status, [item(run, text, 'completed')], usage, extra) }),
        { data: '[DONE]' },
      ];
    },
    error: (run, usage) => [
      frame({ type: 'response.failed', response: response(run, 'failed', [item(run, text, 'incomplete')], usage, { error: FAILURE }) }),
    ],
    body: (run, content, finishReason, usage) => {
      const status = finishReason === 'error' ? 'failed' : finishReason === 'length' ? 'incomplete' : 'completed';
      const extra: Record<string, unknown> = finishReason === 'error' ? { error: FAILURE }
        : finishReason === 'length' ? { incomplete_details: { reason: 'max_output_tokens' } } : {};
      return JSON.stringify(response(run, status, [item(run, content, 'completed')], usage ?? null, extra));
    },
    usage: (run, completionTokens, charge, withCost) => {
      const prompt = run.request.promptTokens;
      const usage: Record<string, unknown> = {
        input_tokens: prompt, input_tokens_details: { cached_tokens: 0 },
        output_tokens: completionTokens, output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: prompt + completionTokens,
      };
      if (withCost) usage['cost'] = usdNumber(charge.costNano);
      usage['is_byok'] = charge.upstreamInferenceNano !== null;
      usage['cost_details'] = {
        upstream_inference_cost: charge.upstreamInferenceNano === null ? null : usdNumber(charge.upstreamInferenceNano),
        upstream_inference_prompt_cost: usdNumber(charge.promptNano),
        upstream_inference_completions_cost: usdNumber(charge.completionsNano),
      };
      return usage;
    },
    errorBody: (status, message, metadata) => errorJson(status, message, metadata),
  };
}
