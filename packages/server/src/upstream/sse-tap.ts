import { createParser, type EventSourceMessage } from 'eventsource-parser';

export interface UpstreamUsage {
  cost?: unknown;
  prompt_tokens?: unknown;
  completion_tokens?: unknown;
  is_byok?: unknown;
  cost_details?: unknown;
  prompt_tokens_details?: unknown;
  completion_tokens_details?: unknown;
}

/**
 * An endpoint's stream reader: what one parsed JSON event tells about the call. Chat's reads
 * the id, model, provider, usage and error of its chunks; others read their own events.
 */
export type StreamReader = (chunk: Record<string, unknown>, state: TapState, eventName: string | undefined, setId: (id: string) => void) => void;

/** Chat completions (and the legacy completions, framed alike): usage from whichever chunk carries it. */
export const chatStreamReader: StreamReader = (chunk, state, _eventName, setId) => {
  if (typeof chunk.id === 'string' && chunk.id !== '') setId(chunk.id);
  if (typeof chunk.model === 'string') state.model = chunk.model;
  if (typeof chunk.provider === 'string') state.provider = chunk.provider;
  if (typeof chunk.usage === 'object' && chunk.usage !== null) state.usage = chunk.usage as UpstreamUsage;
  if (typeof chunk.error === 'object' && chunk.error !== null) state.error = chunk.error as TapState['error'];
};

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

  constructor(private readonly onGenerationId: (id: string) => void, private readonly reader: StreamReader = chatStreamReader) {}

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
    this.reader(chunk, this.state, event.event, (id) => {
      if (this.state.generationId !== null) return;
      this.state.generationId = id;
      this.onGenerationId(id);
    });
  }
}
