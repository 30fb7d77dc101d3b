import { createParser, type EventSourceMessage } from 'eventsource-parser';

export interface UpstreamUsage {
  cost?: unknown;
  prompt_tokens?: unknown;
  completion_tokens?: unknown;
  is_byok?: unknown;
  cost_details?: unknown;
}

export interface TapState {
  generationId: string | null;
  /** The model and provider that served, as the chunks name them (the last one wins). */
  model: string | null;
  provider: string | null;
  usage: UpstreamUsage | null;
  /** The mid-stream error event, if the upstream sent one. */
  error: { code?: unknown; message?: unknown } | null;
  sawDone: boolean;
  malformedEvents: number;
}

/**
 * Reads the SSE byte stream alongside the relay, never altering it: a streaming UTF-8 decoder
 * (characters split across reads), comments and multi-line events handled by
 * eventsource-parser. Usage is taken from whichever chunk carries it.
 */
export class SseTap {
  readonly state: TapState = { generationId: null, model: null, provider: null, usage: null, error: null, sawDone: false, malformedEvents: 0 };
  readonly #decoder = new TextDecoder('utf-8');
  readonly #parser = createParser({ onEvent: (event) => this.onEvent(event) });

  constructor(private readonly onGenerationId: (id: string) => void) {}

  feed(chunk: Buffer): void {
    this.#parser.feed(this.#decoder.decode(chunk, { stream: true }));
  }

  end(): void {
    this.#parser.feed(this.#decoder.decode());
  }

  private onEvent(event: EventSourceMessage): void {
    const data = event.data.trim();
    if (data === '[DONE]') {
      this.state.sawDone = true;
      return;
    }
    let chunk: Record<string, unknown>;
    try {
      chunk = JSON.parse(data) as Record<string, unknown>;
    } catch {
      this.state.malformedEvents += 1;
      return;
    }
    if (typeof chunk !== 'object' || chunk === null) return;
    if (this.state.generationId === null && typeof chunk.id === 'string' && chunk.id !== '') {
      this.state.generationId = chunk.id;
      this.onGenerationId(chunk.id);
    }
    if (typeof chunk.model === 'string') this.state.model = chunk.model;
    if (typeof chunk.provider === 'string') this.state.provider = chunk.provider;
    if (typeof chunk.usage === 'object' && chunk.usage !== null) this.state.usage = chunk.usage as UpstreamUsage;
    if (typeof chunk.error === 'object' && chunk.error !== null) this.state.error = chunk.error as TapState['error'];
  }
}
