import type { Charge } from './billing.js';
import type { ChatRun } from './chat-run.js';

/** One SSE event: `event:` when the format names its events (Anthropic Messages), then `data:`. */
export interface Frame {
  readonly event?: string;
  readonly data: string;
}

/**
 * How one endpoint frames a generation (../shared/openrouter-endpoints.md): the stream's
 * events, the non-streaming body, the usage object and the error body. One instance per
 * request (the Responses stream numbers its events). The run logic (pacing, steering,
 * cancellation, books) is the same for every endpoint.
 */
export interface Format {
  /** Events after the opening comment and before the first token. */
  opening(run: ChatRun): Frame[];
  content(run: ChatRun, text: string): Frame;
  /** The normal end; the last frame ends the response. `usage` null: steered to leave it out. */
  finish(run: ChatRun, finishReason: 'stop' | 'length', usage: Record<string, unknown> | null): Frame[];
  /** The mid-stream error; the last frame ends the response. */
  error(run: ChatRun, usage: Record<string, unknown> | null): Frame[];
  /** The non-streaming body (an error during generation: a 200 with the partial output). */
  body(run: ChatRun, content: string, finishReason: 'stop' | 'length' | 'error', usage: Record<string, unknown> | undefined): string;
  usage(run: ChatRun, completionTokens: number, charge: Charge, withCost: boolean): Record<string, unknown>;
  /** The error body before any output (the HTTP status is `status`). */
  errorBody(status: number, message: string, metadata: Record<string, unknown> | null, generationId: string | null): string;
}
