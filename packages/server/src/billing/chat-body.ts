import { MetergateError } from '../errors.js';
import { assertStorableText } from '../http/text-fields.js';

export interface ChatBody {
  /** The client's body, passed on untouched but for `usage.include` and `user`. */
  readonly raw: Record<string, unknown>;
  readonly stream: boolean;
  readonly model: string | null;
}

/** The checks a client deserves a clear 400 for before anything is metered or forwarded. */
export function parseChatBody(body: unknown): ChatBody {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new MetergateError('invalid_request', 'the request body must be a JSON object');
  }
  const raw = body as Record<string, unknown>;
  if (!Array.isArray(raw.messages) || raw.messages.length === 0) {
    throw new MetergateError('invalid_request', '`messages` is required and must be a non-empty array', { param: 'messages' });
  }
  if (raw.stream !== undefined && typeof raw.stream !== 'boolean') {
    throw new MetergateError('invalid_request', '`stream` must be a boolean', { param: 'stream' });
  }
  if (raw.model !== undefined && (typeof raw.model !== 'string' || raw.model === '')) {
    throw new MetergateError('invalid_request', '`model` must be a non-empty string', { param: 'model' });
  }
  // The model is stored with the request; `models` (OpenRouter's fallbacks) may name the one billed.
  assertStorableText(raw.model, 'model');
  if (Array.isArray(raw.models)) for (const model of raw.models) assertStorableText(model, 'models');
  return { raw, stream: raw.stream === true, model: typeof raw.model === 'string' ? raw.model : null };
}

/**
 * The body sent upstream: `usage: {include: true}` (harmless today, needed by older routes) so
 * the cost comes back with the response, and `user` set to the Metergate user, the party that
 * pays, so OpenRouter's per-user abuse tracking sees the end user.
 */
export function upstreamBody(chat: ChatBody, userId: string, injectedMaxTokens: number | null = null): string {
  const usage = typeof chat.raw.usage === 'object' && chat.raw.usage !== null ? chat.raw.usage : {};
  // Reserve mode: a call without an output limit gets the one its hold was computed for.
  const limit = injectedMaxTokens === null ? {} : { max_tokens: injectedMaxTokens };
  return JSON.stringify({ ...chat.raw, ...limit, usage: { ...usage, include: true }, user: userId });
}
