import { performance } from 'node:perf_hooks';
import type { ServerResponse } from 'node:http';
import { CodedError } from '@metergate/db';
import { DONE_LINES, DoneSplitter } from './done-splitter.js';
import type { UpstreamResponse } from './openrouter.js';
import { chatStreamReader, SseTap, type StreamReader, type TapState } from './sse-tap.js';

export type StreamEnd = 'done' | 'eof' | 'client_closed' | 'client_stalled' | 'upstream_failed';

export interface RelayOutcome {
  end: StreamEnd;
  tap: TapState;
  failure: unknown;
  firstByteS: number | null;
  /** Writes what was held back ([DONE] and after, or a last partial line) and ends the response. */
  finish(): Promise<void>;
}

export interface RelayOptions {
  /** Aborting it cancels the upstream request (client gone, or a limit hit). */
  abort: AbortController;
  requestId: string;
  onGenerationId: (id: string) => void;
  /**
   * A write whose drain does not come within this long cuts the client: a client that reads
   * nothing would otherwise hold the stream, the user's cost barrier and its session forever.
   */
  writeStallMsMax: number;
  onStall?: () => void;
  /** The endpoint's event format; chat's when absent. */
  format?: StreamFormat;
}

/** What the relay needs to know about an endpoint's stream. */
export interface StreamFormat {
  reader: StreamReader;
  /** The lines from which on the tail is held until the cost is written. */
  terminalLines: readonly Buffer[];
  /** The error event written when the upstream stream fails mid-way. */
  midStreamError(generationId: string | null): Buffer;
}

const CHAT_STREAM: StreamFormat = { reader: chatStreamReader, terminalLines: DONE_LINES, midStreamError };

/** Relayed as-is from upstream; everything else the upstream sent about framing is ours. */
const PASSED_HEADERS = ['content-type', 'x-generation-id'];

/**
 * Relays an upstream SSE response byte for byte as it arrives, honouring the client's
 * backpressure, while a tap reads usage and the generation id. The client going away aborts
 * the upstream call at once (providers that support it stop generating and billing).
 */
export async function relaySse(upstream: UpstreamResponse, res: ServerResponse, options: RelayOptions): Promise<RelayOutcome> {
  const started = performance.now();
  const format = options.format ?? CHAT_STREAM;
  const tap = new SseTap(options.onGenerationId, format.reader);
  const splitter = new DoneSplitter(format.terminalLines);
  const headerId = upstream.headers['x-generation-id'];
  if (typeof headerId === 'string' && headerId !== '') {
    tap.state.generationId = headerId;
    options.onGenerationId(headerId);
  }
  writeHead(upstream, res, options.requestId);
  const onClose = () => { if (!res.writableFinished) options.abort.abort(new ClientClosedError()); };
  res.on('close', onClose);
  let end: StreamEnd = 'eof';
  let failure: unknown = null;
  let firstByteS: number | null = null;
  try {
    for await (const chunk of upstream.body as AsyncIterable<Buffer>) {
      firstByteS ??= (performance.now() - started) / 1000;
      tap.feed(chunk);
      const forward = splitter.push(chunk);
      if (forward.length > 0) await write(res, forward, options);
    }
    tap.end();
    end = splitter.sawDone ? 'done' : 'eof';
  } catch (error) {
    failure = error;
    end = error instanceof ClientStalledError ? 'client_stalled'
      : options.abort.signal.reason instanceof ClientClosedError || res.destroyed ? 'client_closed' : 'upstream_failed';
    upstream.body.destroy();
  }
  return {
    end, tap: tap.state, failure, firstByteS,
    finish: async () => {
      res.off('close', onClose);
      if (res.destroyed) return;
      const rest = splitter.drain();
      if (end === 'upstream_failed') {
        // The client cannot get a status any more: tell it in OpenRouter's mid-stream error form.
        res.end(Buffer.concat([rest, format.midStreamError(tap.state.generationId)]));
      } else {
        res.end(rest);
      }
    },
  };
}

export class ClientClosedError extends CodedError<'client_closed'> {
  constructor() { super('client_closed', 'the client closed the connection'); }
}

export class ClientStalledError extends ClientClosedError {
  constructor(readonly stallMs: number) {
    super();
    this.message = `the client read nothing for ${stallMs} ms; connection cut`;
  }
}

function writeHead(upstream: UpstreamResponse, res: ServerResponse, requestId: string): void {
  res.statusCode = upstream.status;
  for (const name of PASSED_HEADERS) {
    const value = upstream.headers[name];
    if (value !== undefined) res.setHeader(name, value);
  }
  res.setHeader('cache-control', 'no-cache');
  // Tells nginx (and similar) not to buffer the stream.
  res.setHeader('x-accel-buffering', 'no');
  res.setHeader('x-request-id', requestId);
  res.flushHeaders();
}

async function write(res: ServerResponse, bytes: Buffer, options: RelayOptions): Promise<void> {
  if (res.destroyed) throw new ClientClosedError();
  if (res.write(bytes)) return;
  // Backpressure: wait until the client drains (or goes away), but not forever. The loser's
  // listeners are removed, or a long stream to a slow client would gather one pair per wait.
  const drained = await new Promise<boolean>((resolve) => {
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      res.off('drain', onDrain);
      res.off('close', onDrain);
      resolve(ok);
    };
    const onDrain = (): void => done(true);
    const timer = setTimeout(() => done(false), options.writeStallMsMax);
    res.on('drain', onDrain);
    res.on('close', onDrain);
    if (res.destroyed) done(true);
  });
  if (!drained) {
    // Upstream aborted first (with this reason), then the socket: the relay settles the part
    // the upstream billed, from its usage or the generation lookup.
    const stalled = new ClientStalledError(options.writeStallMsMax);
    options.onStall?.();
    options.abort.abort(stalled);
    res.destroy();
    throw stalled;
  }
  if (res.destroyed) throw new ClientClosedError();
}

export function midStreamError(generationId: string | null): Buffer {
  const event = {
    id: generationId, object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000),
    error: { code: 502, message: 'the upstream stream failed before it finished' },
    choices: [{ index: 0, delta: { content: '' }, finish_reason: 'error' }],
  };
  return Buffer.from(`data: ${JSON.stringify(event)}\n\n`);
}
