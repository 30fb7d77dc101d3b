import type { StreamFormat } from '../upstream/sse-relay.js';
import type { ChatBody } from './chat-body.js';
import type { UsageLike } from './usage-cost.js';

export type EndpointName = 'chat' | 'responses' | 'messages' | 'completions' | 'embeddings';

/** A non-streaming answer as the metering needs it. */
export interface ParsedAnswer {
  /** The body's id when it is the generation id (chat, completions); else null: the header has it. */
  id: string | null;
  /** The usage mapped to chat's names (UsageLike), or null when the answer has none. */
  usage: UsageLike | null;
  model?: unknown;
  provider?: unknown;
}

/**
 * One metered OpenRouter endpoint: everything that differs between endpoints. The metering
 * (admission and holds, barrier, upstream call, relay, settle, lookup, idempotency) is one
 * core for all of them (metered-call.ts); an endpoint is its request reader, its body sent
 * upstream, its stream reader, its usage reader and its error shape.
 */
export interface Endpoint {
  readonly name: EndpointName;
  /** Under /v1 and /api/v1 here, and under the upstream base. */
  readonly path: string;
  /** Anthropic's error body on /messages (what its clients parse); OpenAI's elsewhere. */
  readonly errorShape: 'openai' | 'anthropic';
  /** The checks a client deserves a clear 400 for; the stream flag and the model. */
  read(body: unknown): ChatBody;
  /** The body as the worst-case rule reads it (chat's field names: messages, max_completion_tokens). */
  pricingView(raw: Record<string, unknown>): Record<string, unknown>;
  /** No output tokens at all (embeddings): the hold is the input's worst case alone. */
  readonly inputOnly: boolean;
  /** The body sent upstream: `user` set to the paying user, and reserve mode's output limit. */
  upstreamBody(body: ChatBody, userId: string, injectedMaxTokens: number | null): string;
  /** The usage and ids of a non-streaming answer. */
  parseAnswer(json: Record<string, unknown>): ParsedAnswer;
  /** Streams (null: the endpoint never streams). */
  readonly stream: StreamFormat | null;
}

export const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
