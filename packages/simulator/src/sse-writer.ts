import type { ServerResponse } from 'node:http';
import { nextTurn } from './clock.js';

const KEEPALIVE_COMMENT = ': OPENROUTER PROCESSING\n\n';
// A cut socket whose peer never reads would never flush; give up waiting after this.
const CUT_FLUSH_MAX_MS = 1_000;

/**
 * Where to split an encoded event so the first write ends inside a multibyte UTF-8
 * character: before the continuation byte closest to the middle, or the middle itself.
 */
export function splitPoint(bytes: Uint8Array): number {
  const middle = bytes.length >> 1;
  let best = -1;
  for (let index = 1; index < bytes.length; index += 1) {
    const isContinuation = ((bytes[index] ?? 0) & 0xc0) === 0x80;
    if (isContinuation && (best < 0 || Math.abs(index - middle) < Math.abs(best - middle))) {
      best = index;
    }
  }
  return best > 0 ? best : Math.max(1, middle);
}

/** Writes one SSE response: backpressure-aware, optionally splitting every event in two. */
export class SseWriter {
  private readonly closer = new AbortController();
  private ended = false;
  private corked = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly splitWrites: boolean,
  ) {
    res.on('close', () => {
      if (!this.ended) this.closer.abort();
    });
    // The client may have left before this writer existed; 'close' has fired already then.
    if (res.destroyed || res.socket?.destroyed === true) this.closer.abort();
  }

  /** Aborts when the client goes away before the response ended. */
  get closedSignal(): AbortSignal {
    return this.closer.signal;
  }

  get closed(): boolean {
    return this.closer.signal.aborted;
  }

  open(generationId: string): void {
    this.res.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      'X-Generation-Id': generationId,
    });
    this.res.flushHeaders();
  }

  /**
   * Batches the following events into one socket write (a burst of zero-delay tokens costs
   * one syscall instead of one per token). Never with split writes, whose point is the split.
   */
  cork(): void {
    if (this.corked || this.splitWrites) return;
    this.corked = true;
    this.res.cork();
  }

  uncork(): void {
    if (!this.corked) return;
    this.corked = false;
    this.res.uncork();
  }

  comment(): Promise<void> {
    return this.send(KEEPALIVE_COMMENT, false);
  }

  data(json: string): Promise<void> {
    return this.send(`data: ${json}\n\n`, false);
  }

  /** One event, named (`event:` line) when the format names it. */
  frame(frame: { event?: string; data: string }): Promise<void> {
    return this.send(frameText(frame), false);
  }

  /** The last event; ends the response. */
  finishFrame(frame: { event?: string; data: string }): Promise<void> {
    return this.send(frameText(frame), true);
  }

  /** Writes the last event and ends the response (terminating chunk included). */
  finish(json: string): Promise<void> {
    return this.send(`data: ${json}\n\n`, true);
  }

  /** Ends the stream without the terminating chunk: the reader sees a premature close. */
  cut(): void {
    this.uncork();
    this.ended = true;
    const socket = this.res.socket;
    if (!socket) return;
    // Flush what was written so the reader gets every token we bill, then drop the socket.
    const timer = setTimeout(() => socket.destroy(), CUT_FLUSH_MAX_MS);
    socket.end(() => {
      clearTimeout(timer);
      socket.destroy();
    });
  }

  private async send(text: string, last: boolean): Promise<void> {
    if (this.closed) return;
    if (last) this.ended = true;
    let rest: string | Buffer = text;
    if (this.splitWrites) {
      const bytes = Buffer.from(text, 'utf8');
      const at = splitPoint(bytes);
      this.res.write(bytes.subarray(0, at));
      // Let the first half reach the socket on its own before the second half follows.
      await nextTurn();
      if (this.closed) return;
      rest = bytes.subarray(at);
    }
    if (last) {
      this.uncork();
      this.res.end(rest);
      return;
    }
    if (!this.res.write(rest)) await this.drained();
  }

  private drained(): Promise<void> {
    // A corked stream never drains: flush first.
    this.uncork();
    return new Promise((resolve) => {
      const done = (): void => {
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      this.res.on('drain', done);
      this.res.on('close', done);
    });
  }
}

function frameText(frame: { event?: string; data: string }): string {
  return frame.event === undefined ? `data: ${frame.data}\n\n` : `event: ${frame.event}\ndata: ${frame.data}\n\n`;
}
