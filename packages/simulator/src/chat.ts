import type { ServerResponse } from 'node:http';
import { settleGeneration } from './billing.js';
import type { Books } from './books.js';
import { parseChatRequest, RequestError, type ChatRequest, type SimEndpoint } from './chat-request.js';
import { chatFormat } from './chat-format.js';
import { completionsFormat } from './completions-format.js';
import type { Format } from './format.js';
import { messagesFormat } from './messages-format.js';
import { responsesFormat } from './responses-format.js';
import type { ChatRun } from './chat-run.js';
import { newGenerationId } from './ids.js';
import { runNonStream } from './non-stream-run.js';
import { sendJson } from './respond.js';
import { runStream } from './stream-run.js';

export interface ChatDeps {
  books: Books;
  defaults: unknown;
  lookup404Ms: number;
}

const DEFAULT_ERROR_MESSAGES: Record<number, string> = {
  400: 'Bad request',
  401: 'User not found.',
  402: 'Insufficient credits',
  403: 'Input flagged by moderation',
  408: 'Request timed out',
  429: 'Rate limit exceeded',
  502: 'Provider returned error',
  503: 'No endpoints found that can handle the request',
};

const FORMATS: Record<SimEndpoint, () => Format> = {
  chat: chatFormat, responses: responsesFormat, messages: messagesFormat, completions: completionsFormat,
};

function openRun(deps: ChatDeps, request: ChatRequest, format: Format): ChatRun {
  const generation = deps.books.open({
    id: newGenerationId(),
    model: request.model.id,
    providerName: request.model.providerName,
    user: request.user,
    stream: request.stream,
    promptTokens: request.promptTokens,
    lookup404Ms: request.steering.lookup404Ms ?? deps.lookup404Ms,
    isByok: request.steering.byok,
  });
  return { request, generation, books: deps.books, created: Math.floor(Date.now() / 1000), format };
}

/**
 * Steered error before any output: HTTP status = error code, nothing billed. The generation
 * stays in the books (costNano 0n, finishReason "error") so its id can be looked up.
 */
function answerErrorBefore(run: ChatRun, res: ServerResponse): void {
  const failure = run.request.steering.errorBefore;
  if (failure === null) return;
  settleGeneration(run.books, run.generation, run.request.model, {
    completionTokens: 0, finishReason: 'error', cancelled: false,
  });
  const headers: Record<string, string> = { 'X-Generation-Id': run.generation.record.id };
  if (failure.retryAfterS !== null) headers['Retry-After'] = String(failure.retryAfterS);
  const message = failure.message ?? DEFAULT_ERROR_MESSAGES[failure.status] ?? 'Error';
  sendJson(res, failure.status, run.format.errorBody(failure.status, message, failure.metadata, run.generation.record.id), headers);
}

/** POST /chat/completions (or another generating endpoint) with an already parsed JSON body. */
export async function handleChat(deps: ChatDeps, body: unknown, res: ServerResponse, endpoint: SimEndpoint = 'chat'): Promise<void> {
  const format = FORMATS[endpoint]();
  let request: ChatRequest;
  try {
    request = parseChatRequest(body, deps.defaults, endpoint);
  } catch (error) {
    if (!(error instanceof RequestError)) throw error;
    sendJson(res, 400, format.errorBody(400, error.message, null, null));
    return;
  }
  const run = openRun(deps, request, format);
  try {
    if (request.steering.errorBefore !== null) answerErrorBefore(run, res);
    else if (request.stream) await runStream(run, res);
    else await runNonStream(run, res);
  } finally {
    // A bug must not leave a generation running forever in the books.
    settleGeneration(run.books, run.generation, request.model, {
      completionTokens: run.generation.record.completionTokens, finishReason: null, cancelled: true,
    });
  }
}
