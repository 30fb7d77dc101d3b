import { DONE_LINES } from '../upstream/done-splitter.js';
import { chatStreamReader } from '../upstream/sse-tap.js';
import { chatShapedAnswer } from './chat-endpoint.js';
import type { Endpoint } from './endpoint.js';
import { assertOutputLimit, readRequest, textOrItems, withUserAndLimit } from './endpoint-request.js';

function midStreamError(generationId: string | null): Buffer {
  const event = {
    id: generationId, object: 'text_completion', created: Math.floor(Date.now() / 1000),
    error: { code: 502, message: 'the upstream stream failed before it finished' },
    choices: [{ index: 0, text: '', finish_reason: 'error' }],
  };
  return Buffer.from(`data: ${JSON.stringify(event)}\n\n`);
}

/** POST /completions (legacy): `prompt` required, chat's framing and usage (openrouter-endpoints.md). */
export const completionsEndpoint: Endpoint = {
  name: 'completions',
  path: '/completions',
  errorShape: 'openai',
  read: (body) => {
    const call = readRequest(body, { field: 'prompt', ok: textOrItems, what: 'a non-empty string or array' });
    assertOutputLimit(call.raw, 'max_tokens');
    return call;
  },
  pricingView: (raw) => {
    const { prompt, max_completion_tokens: _ignored, ...rest } = raw;
    return { ...rest, messages: Array.isArray(prompt) ? prompt.map((text) => ({ content: text })) : [{ content: prompt }] };
  },
  inputOnly: false,
  upstreamBody: (body, userId, injected) => withUserAndLimit(body.raw, userId, 'max_tokens', injected),
  parseAnswer: chatShapedAnswer,
  stream: { reader: chatStreamReader, terminalLines: DONE_LINES, midStreamError },
};
