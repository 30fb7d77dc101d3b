import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseJson, readBody, type ParsedBody } from './body.js';
import type { Books } from './books.js';
import { handleChat } from './chat.js';
import { nowMs } from './clock.js';
import { handleControl } from './control.js';
import { handleGenerationLookup } from './generation-lookup.js';
import { modelsListingJson } from './models.js';
import { handleEmbeddings } from './embeddings.js';
import type { SimEndpoint } from './chat-request.js';
import { sendError, sendJson } from './respond.js';
import { isObject } from './steering.js';
import type { RequestLogEntry } from './types.js';

export interface HandlerDeps {
  books: Books;
  log: RequestLogEntry[];
  apiKey: string | null;
  lookup404Ms: number;
  defaults: unknown;
}

// The API lives under /api/v1 like OpenRouter's; /v1 is accepted too for clients configured
// with a bare host. Control routes answer at the root and under either prefix.
const API_PREFIXES = ['/api/v1', '/v1'];

function stripPrefix(pathname: string): string | null {
  for (const prefix of API_PREFIXES) {
    if (pathname.startsWith(`${prefix}/`)) return pathname.slice(prefix.length);
  }
  return pathname.startsWith('/__sim/') ? pathname : null;
}

function logRequest(deps: HandlerDeps, req: IncomingMessage, parsed: ParsedBody, timeMs: number): void {
  const user = parsed.ok && isObject(parsed.value) ? parsed.value['user'] : undefined;
  deps.log.push({
    method: req.method ?? 'GET',
    path: req.url ?? '/',
    authorization: req.headers.authorization ?? null,
    user: typeof user === 'string' ? user : null,
    timeMs,
  });
}

/** 401 with OpenRouter's messages when a key is configured and not presented exactly. */
function rejectUnauthorized(deps: HandlerDeps, req: IncomingMessage, res: ServerResponse): boolean {
  if (deps.apiKey === null) return false;
  const header = req.headers.authorization;
  if (header === `Bearer ${deps.apiKey}`) return false;
  sendError(res, 401, header === undefined ? 'No auth credentials found' : 'User not found.');
  return true;
}

/** The generating endpoints (openrouter-endpoints.md), one run logic, each in its own framing. */
const GENERATING: Record<string, SimEndpoint> = {
  '/chat/completions': 'chat', '/responses': 'responses', '/messages': 'messages', '/completions': 'completions',
};

async function route(deps: HandlerDeps, req: IncomingMessage, res: ServerResponse, path: string, url: URL, parsed: ParsedBody): Promise<void> {
  const method = req.method ?? 'GET';
  if (path === '/models' && method === 'GET') {
    sendJson(res, 200, modelsListingJson(url.searchParams.get('output_modalities')));
  } else if (path === '/generation' && method === 'GET') {
    handleGenerationLookup(deps.books, url, res);
  } else if (Object.hasOwn(GENERATING, path) && method === 'POST') {
    if (!parsed.ok) sendError(res, 400, 'Invalid JSON in request body');
    else await handleChat(deps, parsed.value, res, GENERATING[path]);
  } else if (path === '/embeddings' && method === 'POST') {
    if (!parsed.ok) sendError(res, 400, 'Invalid JSON in request body');
    else await handleEmbeddings(deps, parsed.value, res);
  } else {
    sendError(res, 404, `Not found: ${method} ${url.pathname}`);
  }
}

async function handle(deps: HandlerDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const receivedAtMs = nowMs();
  const url = new URL(req.url ?? '/', 'http://simulator');
  const path = stripPrefix(url.pathname);
  const body = await readBody(req);
  if (path?.startsWith('/__sim/')) {
    handleControl(deps, req.method ?? 'GET', path, res);
    return;
  }
  const parsed: ParsedBody = body === null ? { ok: false } : parseJson(body);
  logRequest(deps, req, parsed, receivedAtMs);
  if (rejectUnauthorized(deps, req, res)) return;
  if (body === null) sendError(res, 413, 'Request body too large');
  else if (path === null) sendError(res, 404, `Not found: ${req.method ?? 'GET'} ${url.pathname}`);
  else await route(deps, req, res, path, url, parsed);
}

function failRequest(res: ServerResponse, error: unknown): void {
  if (!res.headersSent) {
    sendError(res, 500, `Simulator error: ${error instanceof Error ? error.message : String(error)}`);
  } else {
    res.destroy();
  }
}

export function createHandler(deps: HandlerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    handle(deps, req, res).catch((error: unknown) => failRequest(res, error));
  };
}
