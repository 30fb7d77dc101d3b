import type { ServerResponse } from 'node:http';
import { StreamSummary } from './stream-summary.js';

/** Headers that describe the body; kept with it for a replay. */
const KEPT_HEADERS = ['content-type', 'x-generation-id', 'cache-control'];

export interface RecorderLimits {
  /** An SSE body is kept byte for byte up to this size. */
  streamBytesMax: number;
  /** Any other body, and the text a stream summary keeps. */
  bodyBytesMax: number;
  /**
   * Chat-shaped streams only (the default): a summary lets a cut or oversized stream be
   * replayed as an equivalent one. Without it a stream is kept byte for byte or not at all.
   */
  summarizeStreams?: boolean;
}

export interface Recording {
  status: number;
  headers: Record<string, string>;
  /** The bytes written, or null when over the limit. */
  bytes: Buffer | null;
  /** For an SSE response: what it amounted to. */
  summary: StreamSummary | null;
}

type EndArgs = [chunk?: unknown, encoding?: unknown, callback?: unknown];

/**
 * Records what a response sends (status, body-describing headers, bytes within limits) by
 * wrapping the instance's write and end, without changing what the client receives. The call
 * code (relay, JSON, error handler) stays unaware of idempotency. `end` is held back until
 * onEnd resolves, so a client that received the whole response and retries at once finds its
 * key already completed (or released), never still running.
 */
export class ResponseRecorder {
  readonly #chunks: Buffer[] = [];
  #length = 0;
  #overflow = false;
  #summary: StreamSummary | null = null;
  #isStream = false;
  #sniffed = false;
  #unsent: Recording | null = null;
  #ended: Promise<void> | null = null;

  constructor(
    private readonly res: ServerResponse,
    private readonly limits: RecorderLimits,
    private readonly onEnd: (recording: Recording) => Promise<void>,
  ) {
    const originalWrite = res.write.bind(res) as (...args: unknown[]) => boolean;
    const originalEnd = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
    (res as unknown as { write: (...args: unknown[]) => boolean }).write = (chunk: unknown, encoding?: unknown, callback?: unknown) => {
      this.capture(chunk, encoding);
      return originalWrite(chunk, encoding, callback);
    };
    (res as unknown as { end: (...args: EndArgs) => ServerResponse }).end = (...args: EndArgs) => {
      const [chunk, encoding] = typeof args[0] === 'function' ? [undefined, undefined] : typeof args[1] === 'function' ? [args[0], undefined] : args;
      this.capture(chunk, encoding);
      const recording = this.recording();
      this.#ended ??= this.onEnd(recording).finally(() => { originalEnd(...args); });
      return res;
    };
  }

  /** Resolves once end reached the client (null: end was never called). */
  get ended(): Promise<void> | null { return this.#ended; }

  /** A body the call produced but could not send (the client had gone): kept for replay. */
  unsent(status: number, headers: Record<string, string>, body: Buffer): void {
    this.#unsent = { status, headers, bytes: body, summary: null };
  }

  /** What was recorded so far (for a response that will never be ended). */
  recording(): Recording {
    if (this.#unsent !== null) return this.#unsent;
    const headers: Record<string, string> = {};
    for (const name of KEPT_HEADERS) {
      const value = this.res.getHeader(name);
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : String(value);
    }
    return {
      status: this.res.statusCode, headers,
      bytes: this.#overflow ? null : Buffer.concat(this.#chunks, this.#length),
      summary: this.#summary,
    };
  }

  /** Nothing at all reached the client: no headers, no body. */
  get silent(): boolean { return this.#unsent === null && !this.res.headersSent && this.#length === 0 && !this.#overflow; }

  private capture(chunk: unknown, encoding: unknown): void {
    if (chunk === undefined || chunk === null) return;
    const bytes = Buffer.isBuffer(chunk) ? chunk
      : chunk instanceof Uint8Array ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
        : Buffer.from(String(chunk), typeof encoding === 'string' ? encoding as BufferEncoding : 'utf8');
    if (bytes.length === 0) return;
    this.sniff();
    this.#summary?.feed(bytes);
    if (this.#overflow) return;
    const limit = this.#isStream ? this.limits.streamBytesMax : this.limits.bodyBytesMax;
    if (this.#length + bytes.length > limit) {
      this.#overflow = true;
      this.#chunks.length = 0;
      return;
    }
    // Copied: the caller may reuse its buffer after write returns.
    this.#chunks.push(Buffer.from(bytes));
    this.#length += bytes.length;
  }

  private sniff(): void {
    if (this.#sniffed) return;
    this.#sniffed = true;
    const type = this.res.getHeader('content-type');
    if (typeof type === 'string' && type.toLowerCase().startsWith('text/event-stream')) {
      this.#isStream = true;
      if (this.limits.summarizeStreams !== false) this.#summary = new StreamSummary(this.limits.bodyBytesMax);
    }
  }
}
