import type { ServerResponse } from 'node:http';
import { settleGeneration, type Charge } from './billing.js';
import { stopPoint, type ChatRun } from './chat-run.js';
import { nowMs, sleep } from './clock.js';
import { completionText } from './lorem.js';
import { sendJson } from './respond.js';
import type { FinishReason } from './types.js';

function settle(run: ChatRun, completionTokens: number, finishReason: FinishReason, cancelled = false): Charge {
  const { books, generation, request } = run;
  return settleGeneration(books, generation, request.model, { completionTokens, finishReason, cancelled });
}

/**
 * Serves a non-streaming request. It takes as long as the same stream would
 * (latency + a chunk delay per further token) and, per the protocol, ignores the client
 * leaving: generation runs to its end and is billed in full. Only a simulator shutdown stops it.
 */
export async function runNonStream(run: ChatRun, res: ServerResponse): Promise<void> {
  const { steering } = run.request;
  const end = stopPoint(run);
  const generationMs = steering.latencyMs + Math.max(0, end.tokens - 1) * steering.chunkDelayMs;
  const stop = run.generation.stop.signal;
  await sleep(generationMs, stop);
  if (stop.aborted) {
    settle(run, 0, null, true);
    res.destroy();
    return;
  }
  run.generation.firstTokenAtMs = nowMs();
  if (end.reason === 'cut') {
    settle(run, end.tokens, null);
    res.destroy();
    return;
  }
  const finishReason = end.reason === 'error' ? 'error' : run.request.plannedFinish;
  const charge = settle(run, end.tokens, finishReason);
  const withUsage = end.reason !== 'error' || steering.usageOnError;
  const usage = withUsage
    ? run.format.usage(run, end.tokens, charge, !steering.omitUsage)
    : undefined;
  const body = run.format.body(run, completionText(end.tokens), finishReason, usage);
  sendJson(res, 200, body, { 'X-Generation-Id': run.generation.record.id });
}
