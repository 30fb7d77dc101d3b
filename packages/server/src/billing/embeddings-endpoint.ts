import { MetergateError } from '../errors.js';
import { isRecord, type Endpoint } from './endpoint.js';
import { readRequest, textOrItems, withUserAndLimit } from './endpoint-request.js';

/**
 * POST /embeddings: never streams, no output tokens: the hold is the input's worst case (its
 * bytes bound its tokens). The answer's id (`embd-…`) is not the generation id.
 */
export const embeddingsEndpoint: Endpoint = {
  name: 'embeddings',
  path: '/embeddings',
  errorShape: 'openai',
  read: (body) => {
    const call = readRequest(body, { field: 'input', ok: textOrItems, what: 'a non-empty string or array' });
    if (call.stream) throw new MetergateError('invalid_request', 'embeddings do not stream: send `stream: false` or leave it out', { param: 'stream' });
    return call;
  },
  pricingView: (raw) => {
    const { input, max_tokens: _a, max_completion_tokens: _b, ...rest } = raw;
    return { ...rest, messages: Array.isArray(input) ? input.map((item) => ({ content: item })) : [{ content: input }] };
  },
  inputOnly: true,
  upstreamBody: (body, userId) => withUserAndLimit(body.raw, userId, null, null),
  parseAnswer: (json) => ({
    id: null, usage: isRecord(json['usage']) ? { ...json['usage'], completion_tokens: 0 } : null, model: json['model'], provider: json['provider'],
  }),
  stream: null,
};
