import type { Books, Generation } from './books.js';
import type { ChatRequest } from './chat-request.js';
import type { Format } from './format.js';

/** Everything one accepted chat completion needs while it runs. */
export interface ChatRun {
  readonly request: ChatRequest;
  readonly generation: Generation;
  readonly books: Books;
  /** Unix seconds, the `created` field of every chunk. */
  readonly created: number;
  /** How this endpoint frames the generation (chat, responses, messages, completions). */
  readonly format: Format;
}

/**
 * How many tokens to produce before stopping, and why: the planned end, or an injected
 * error or cut, whichever comes first (an injection past the plan fires after the last token).
 */
export function stopPoint(run: ChatRun): { tokens: number; reason: 'finish' | 'error' | 'cut' } {
  const { plannedTokens, steering } = run.request;
  const cut = steering.cutAfterTokens;
  const error = steering.errorAfterTokens;
  if (cut !== null && (error === null || cut < error)) {
    return { tokens: Math.min(cut, plannedTokens), reason: 'cut' };
  }
  if (error !== null) return { tokens: Math.min(error, plannedTokens), reason: 'error' };
  return { tokens: plannedTokens, reason: 'finish' };
}
