import { createParser, type EventSourceParser } from 'eventsource-parser';

interface ToolCall { index: number; id?: string; type?: string; function: { name?: string; arguments: string } }

interface ChoiceSummary {
  index: number;
  role: string | null;
  content: string;
  reasoning: string;
  toolCalls: Map<number, ToolCall>;
  finishReason: unknown;
  nativeFinishReason: unknown;
}

/**
 * What a relayed chat-completion stream amounted to, merged from its chunks as they pass:
 * enough to write an equivalent completed stream for an idempotent replay when the bytes
 * themselves were too many to keep (or the stream never completed). Bounded: past charsMax
 * of accumulated text it stops keeping text and says so.
 */
export class StreamSummary {
  readonly #decoder = new TextDecoder('utf-8');
  readonly #parser: EventSourceParser = createParser({ onEvent: (event) => this.onEvent(event.data) });
  readonly #choices = new Map<number, ChoiceSummary>();
  #head: Record<string, unknown> = {};
  #usage: unknown = null;
  #error: Record<string, unknown> | null = null;
  #chars = 0;
  sawDone = false;
  overflow = false;

  constructor(private readonly charsMax: number) {}

  /** The stream ended on its own terms: [DONE], or OpenRouter's mid-stream error event. */
  get complete(): boolean { return this.sawDone || this.#error !== null; }

  feed(bytes: Buffer): void {
    this.#parser.feed(this.#decoder.decode(bytes, { stream: true }));
  }

  /** An equivalent stream: one content chunk per choice, finish, usage, [DONE] (or the error). */
  toSse(): Buffer {
    this.#parser.feed(this.#decoder.decode());
    const chunk = (fields: Record<string, unknown>) => `data: ${JSON.stringify({ ...this.#head, ...fields })}\n\n`;
    const choices = [...this.#choices.values()].sort((a, b) => a.index - b.index);
    const parts = [chunk({ choices: choices.map((choice) => ({ index: choice.index, delta: delta(choice), finish_reason: null })) })];
    if (this.#error !== null) {
      parts.push(`data: ${JSON.stringify(this.#error)}\n\n`);
      return Buffer.from(parts.join(''));
    }
    parts.push(chunk({
      choices: choices.map((choice) => ({
        index: choice.index, delta: {}, finish_reason: choice.finishReason ?? null,
        ...(choice.nativeFinishReason === undefined ? {} : { native_finish_reason: choice.nativeFinishReason }),
      })),
    }));
    if (this.#usage !== null) parts.push(chunk({ choices: [], usage: this.#usage }));
    parts.push('data: [DONE]\n\n');
    return Buffer.from(parts.join(''));
  }

  private onEvent(data: string): void {
    const text = data.trim();
    if (text === '[DONE]') {
      this.sawDone = true;
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return;
    this.merge(parsed as Record<string, unknown>);
  }

  private merge(event: Record<string, unknown>): void {
    for (const name of ['id', 'object', 'created', 'model', 'provider', 'system_fingerprint']) {
      if (event[name] !== undefined && this.#head[name] === undefined) this.#head[name] = event[name];
    }
    if (event.usage !== undefined && event.usage !== null) this.#usage = event.usage;
    if (typeof event.error === 'object' && event.error !== null) this.#error = event;
    if (!Array.isArray(event.choices)) return;
    for (const raw of event.choices as unknown[]) {
      if (typeof raw === 'object' && raw !== null) this.mergeChoice(raw as Record<string, unknown>);
    }
  }

  private mergeChoice(raw: Record<string, unknown>): void {
    const index = typeof raw.index === 'number' ? raw.index : 0;
    let choice = this.#choices.get(index);
    if (choice === undefined) {
      choice = { index, role: null, content: '', reasoning: '', toolCalls: new Map(), finishReason: null, nativeFinishReason: undefined };
      this.#choices.set(index, choice);
    }
    if (raw.finish_reason !== undefined && raw.finish_reason !== null) choice.finishReason = raw.finish_reason;
    if (raw.native_finish_reason !== undefined && raw.native_finish_reason !== null) choice.nativeFinishReason = raw.native_finish_reason;
    const d = raw.delta;
    if (typeof d !== 'object' || d === null) return;
    const change = d as Record<string, unknown>;
    if (typeof change.role === 'string') choice.role = change.role;
    if (typeof change.content === 'string') choice.content += this.keep(change.content);
    if (typeof change.reasoning === 'string') choice.reasoning += this.keep(change.reasoning);
    if (Array.isArray(change.tool_calls)) for (const call of change.tool_calls as unknown[]) this.mergeToolCall(choice, call);
  }

  private mergeToolCall(choice: ChoiceSummary, raw: unknown): void {
    if (typeof raw !== 'object' || raw === null) return;
    const call = raw as { index?: unknown; id?: unknown; type?: unknown; function?: { name?: unknown; arguments?: unknown } };
    const index = typeof call.index === 'number' ? call.index : choice.toolCalls.size;
    const merged = choice.toolCalls.get(index) ?? { index, function: { arguments: '' } };
    if (typeof call.id === 'string') merged.id = call.id;
    if (typeof call.type === 'string') merged.type = call.type;
    if (typeof call.function?.name === 'string') merged.function.name = call.function.name;
    if (typeof call.function?.arguments === 'string') merged.function.arguments += this.keep(call.function.arguments);
    choice.toolCalls.set(index, merged);
  }

  private keep(text: string): string {
    this.#chars += text.length;
    if (this.#chars > this.charsMax) this.overflow = true;
    return this.overflow ? '' : text;
  }
}

function delta(choice: ChoiceSummary): Record<string, unknown> {
  const out: Record<string, unknown> = { role: choice.role ?? 'assistant', content: choice.content };
  if (choice.reasoning !== '') out.reasoning = choice.reasoning;
  if (choice.toolCalls.size > 0) out.tool_calls = [...choice.toolCalls.values()].sort((a, b) => a.index - b.index);
  return out;
}
