import { DONE_LINES } from '../upstream/done-splitter.js';
import type { StreamReader, TapState } from '../upstream/sse-tap.js';
import { isRecord, type Endpoint } from './endpoint.js';
import { assertOutputLimit, nonEmptyArray, readRequest, withUserAndLimit } from './endpoint-request.js';
import { messagesUsage } from './endpoint-usage.js';

/**
 * Anthropic's named events: the model and input tokens on `message_start`, cumulative usage on
 * `message_delta` (merged over the earlier one; the spec's streamed usage has no `cost`, so the
 * cost usually comes from /generation), errors as `event: error`. Body ids (`msg_…`) are not
 * the generation id.
 */
const reader: StreamReader = (chunk, state) => {
  const message = chunk['message'];
  if (chunk['type'] === 'message_start' && isRecord(message)) {
    if (typeof message['model'] === 'string') state.model = message['model'];
    if (isRecord(message['usage'])) state.usage = { ...state.usage, ...messagesUsage(message['usage']) };
  }
  if (chunk['type'] === 'message_delta' && isRecord(chunk['usage'])) state.usage = { ...state.usage, ...messagesUsage(chunk['usage']) };
  if (chunk['type'] === 'error') state.error = (isRecord(chunk['error']) ? chunk['error'] : { message: 'error' }) as TapState['error'];
};

function midStreamError(): Buffer {
  const event = { type: 'error', error: { type: 'api_error', message: 'the upstream stream failed before it finished' } };
  return Buffer.from(`event: error\ndata: ${JSON.stringify(event)}\n\n`);
}

/** Anthropic ends at `message_stop`, the spec names `[DONE]`: the tail is held from either. */
const TERMINAL_LINES = [Buffer.from('event: message_stop'), Buffer.from('event:message_stop'), ...DONE_LINES];

/** POST /messages (Anthropic format): `messages` required, `max_tokens` the output limit. */
export const messagesEndpoint: Endpoint = {
  name: 'messages',
  path: '/messages',
  errorShape: 'anthropic',
  read: (body) => {
    const call = readRequest(body, { field: 'messages', ok: nonEmptyArray, what: 'a non-empty array' });
    assertOutputLimit(call.raw, 'max_tokens');
    return call;
  },
  // `max_tokens` is chat's name too; a thinking budget lies within it (Anthropic's rule).
  pricingView: (raw) => raw,
  inputOnly: false,
  upstreamBody: (body, userId, injected) => withUserAndLimit(body.raw, userId, 'max_tokens', injected),
  parseAnswer: (json) => ({
    id: null, usage: isRecord(json['usage']) ? messagesUsage(json['usage']) : null, model: json['model'], provider: json['provider'],
  }),
  stream: { reader, terminalLines: TERMINAL_LINES, midStreamError },
};
