import { MetergateError } from '../errors.js';
import { DONE_LINES } from '../upstream/done-splitter.js';
import type { StreamReader, TapState } from '../upstream/sse-tap.js';
import { isRecord, type Endpoint } from './endpoint.js';
import { assertOutputLimit, readRequest, textOrItems, withUserAndLimit } from './endpoint-request.js';
import { responsesUsage } from './endpoint-usage.js';

/**
 * Responses events carry `type` (with or without `event:` lines): usage is on whichever event
 * carries the whole response (completed, incomplete, failed, or the older `response.done`).
 * Body ids (`resp_…`) are not the generation id: that comes from the X-Generation-Id header.
 */
const reader: StreamReader = (chunk, state) => {
  const response = chunk['response'];
  if (isRecord(response)) {
    if (typeof response['model'] === 'string') state.model = response['model'];
    if (typeof response['provider'] === 'string') state.provider = response['provider'];
    if (isRecord(response['usage'])) state.usage = responsesUsage(response['usage']);
    if (chunk['type'] === 'response.failed') state.error = (isRecord(response['error']) ? response['error'] : { message: 'response.failed' }) as TapState['error'];
  }
  if (chunk['type'] === 'error') state.error = (isRecord(chunk['error']) ? chunk['error'] : chunk) as TapState['error'];
};

function midStreamError(): Buffer {
  const event = { type: 'error', code: 'server_error', message: 'the upstream stream failed before it finished', param: null };
  return Buffer.from(`data: ${JSON.stringify(event)}\n\n`);
}

/** POST /responses (stateless): `input` required, `max_output_tokens` the output limit. */
export const responsesEndpoint: Endpoint = {
  name: 'responses',
  path: '/responses',
  errorShape: 'openai',
  read: (body) => {
    const call = readRequest(body, { field: 'input', ok: textOrItems, what: 'a non-empty string or array of items' });
    if (call.raw['store'] === true || call.raw['previous_response_id'] !== undefined) {
      throw new MetergateError('invalid_request', 'stateful responses are not supported: send `store: false` and no `previous_response_id`', { param: 'store' });
    }
    assertOutputLimit(call.raw, 'max_output_tokens');
    return call;
  },
  pricingView: (raw) => {
    const { input, max_output_tokens: limit, max_tokens: _ignored, max_completion_tokens: _alsoIgnored, ...rest } = raw;
    return { ...rest, messages: Array.isArray(input) ? input : [{ role: 'user', content: input }], max_completion_tokens: limit };
  },
  inputOnly: false,
  upstreamBody: (body, userId, injected) => withUserAndLimit(body.raw, userId, 'max_output_tokens', injected),
  parseAnswer: (json) => ({
    id: null, usage: isRecord(json['usage']) ? responsesUsage(json['usage']) : null, model: json['model'], provider: json['provider'],
  }),
  stream: { reader, terminalLines: DONE_LINES, midStreamError },
};
