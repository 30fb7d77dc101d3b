import type { ServerResponse } from 'node:http';
import { settleGeneration, type Charge } from './billing.js';
import { stopPoint, type ChatRun } from './chat-run.js';
import type { Frame } from './format.js';
import { nextTurn, nowMs, sleep } from './clock.js';
import { tokenText } from './lorem.js';
import { SseWriter } from './sse-writer.js';
import type { FinishReason } from './types.js';

/** Waits for the first token, sending a keep-alive comment every keepaliveMs meanwhile. */
async function awaitFirstToken(run: ChatRun, writer: SseWriter): Promise<void> {
  const { latencyMs, keepaliveMs } = run.request.steering;
  const stop = run.generation.stop.signal;
  const firstTokenAtMs = nowMs() + latencyMs;
  for (;;) {
    const remainingMs = firstTokenAtMs - nowMs();
    if (remainingMs <= 0 || stop.aborted) return;
    const waitMs = keepaliveMs > 0 ? Math.min(remainingMs, keepaliveMs) : remainingMs;
    await sleep(Math.ceil(waitMs), stop);
    if (stop.aborted || nowMs() >= firstTokenAtMs) return;
    await writer.comment();
  }
}

// Zero-delay bursts yield to the event loop this often, so that other streams progress and a
// client's close is noticed mid-burst.
const BURST_TOKENS = 64;

/** The pause before token `produced` (none before the first; latency covers that). */
async function pace(run: ChatRun, writer: SseWriter, produced: number): Promise<void> {
  const { chunkDelayMs } = run.request.steering;
  if (produced === 0) {
    if (chunkDelayMs === 0) writer.cork();
  } else if (chunkDelayMs > 0) {
    await sleep(chunkDelayMs, run.generation.stop.signal);
  } else if (produced % BURST_TOKENS === 0) {
    writer.uncork();
    await nextTurn();
    writer.cork();
  }
}

/**
 * Produces up to `count` tokens and returns how many were produced. Once the client is gone
 * a non-cancellable generation keeps going silently (writes become no-ops); a cancellable one
 * has its stop signal aborted and returns the count written before the close was detected.
 */
async function emitTokens(run: ChatRun, writer: SseWriter, count: number): Promise<number> {
  const { commentEveryTokens } = run.request.steering;
  const stop = run.generation.stop.signal;
  let produced = 0;
  while (produced < count && !stop.aborted) {
    await pace(run, writer, produced);
    if (stop.aborted) break;
    if (produced === 0) run.generation.firstTokenAtMs = nowMs();
    if (!writer.closed) await writer.frame(run.format.content(run, tokenText(produced)));
    produced += 1;
    if (commentEveryTokens > 0 && produced % commentEveryTokens === 0 && produced < count) {
      await writer.comment();
    }
  }
  return produced;
}

function settle(run: ChatRun, completionTokens: number, finishReason: FinishReason, cancelled = false): Charge {
  const { books, generation, request } = run;
  return settleGeneration(books, generation, request.model, { completionTokens, finishReason, cancelled });
}

/** Writes the frames, the last one ending the response. */
async function writeLast(writer: SseWriter, frames: Frame[]): Promise<void> {
  for (const [index, frame] of frames.entries()) {
    if (index === frames.length - 1) await writer.finishFrame(frame);
    else await writer.frame(frame);
  }
}

/** The normal end in the endpoint's framing (chat: finish chunk, usage separate or on it, [DONE]). */
async function finishNormally(run: ChatRun, writer: SseWriter, produced: number): Promise<void> {
  const { steering, plannedFinish } = run.request;
  const charge = settle(run, produced, plannedFinish);
  const usage = steering.omitUsage ? null : run.format.usage(run, produced, charge, true);
  await writeLast(writer, run.format.finish(run, plannedFinish, usage));
}

async function finishWithError(run: ChatRun, writer: SseWriter, produced: number): Promise<void> {
  const { steering } = run.request;
  const charge = settle(run, produced, 'error');
  const usage = steering.usageOnError ? run.format.usage(run, produced, charge, true) : null;
  await writeLast(writer, run.format.error(run, usage));
}

/** Serves `stream: true`: headers and a comment at once, then one event per token. */
export async function runStream(run: ChatRun, res: ServerResponse): Promise<void> {
  const writer = new SseWriter(res, run.request.steering.splitWrites);
  const { stop } = run.generation;
  // Only a cancellable generation stops when its client leaves (provider-dependent upstream).
  if (run.request.steering.cancellable) {
    writer.closedSignal.addEventListener('abort', () => stop.abort(), { once: true });
  }
  writer.open(run.generation.record.id);
  await writer.comment();
  for (const frame of run.format.opening(run)) await writer.frame(frame);
  await awaitFirstToken(run, writer);
  const end = stopPoint(run);
  const produced = await emitTokens(run, writer, end.tokens);
  if (stop.signal.aborted) {
    writer.uncork();
    settle(run, produced, null, true);
  } else if (end.reason === 'error') {
    await finishWithError(run, writer, produced);
  } else if (end.reason === 'cut') {
    settle(run, produced, null);
    writer.cut();
  } else {
    await finishNormally(run, writer, produced);
  }
}
