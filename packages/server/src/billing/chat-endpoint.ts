import { DONE_LINES } from '../upstream/done-splitter.js';
import { midStreamError } from '../upstream/sse-relay.js';
import { chatStreamReader } from '../upstream/sse-tap.js';
import { parseChatBody, upstreamBody } from './chat-body.js';
import { isRecord, type Endpoint, type ParsedAnswer } from './endpoint.js';

/** A chat-shaped answer (chat and legacy completions): the body's id is the generation id. */
export function chatShapedAnswer(body: Record<string, unknown>): ParsedAnswer {
  return {
    id: typeof body['id'] === 'string' && body['id'] !== '' ? body['id'] : null,
    usage: isRecord(body['usage']) ? body['usage'] : null,
    model: body['model'], provider: body['provider'],
  };
}

/** POST /chat/completions: the endpoint the metering was first written for, unchanged. */
export const chatEndpoint: Endpoint = {
  name: 'chat',
  path: '/chat/completions',
  errorShape: 'openai',
  read: parseChatBody,
  pricingView: (raw) => raw,
  inputOnly: false,
  upstreamBody,
  parseAnswer: chatShapedAnswer,
  stream: { reader: chatStreamReader, terminalLines: DONE_LINES, midStreamError },
};
