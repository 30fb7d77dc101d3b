import type { Readable } from 'node:stream';
import { Pool, errors as undiciErrors } from 'undici';
import { MetergateError } from '../errors.js';

export interface UpstreamLimits {
  connectionsMax: number;
  /** Longest wait for the response headers. */
  timeoutMs: number;
  /** Longest silence between body bytes. */
  idleTimeoutMs: number;
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

/**
 * The only holder of the operator's OpenRouter key: it is added to upstream requests here and
 * appears nowhere else (not in logs, errors or responses). Clients' headers are never
 * forwarded, so a user's key never reaches upstream.
 */
export class OpenRouterClient {
  readonly #pool: Pool;
  readonly #basePath: string;
  readonly #authorization: string;

  constructor(baseUrl: string, apiKey: string, private readonly limits: UpstreamLimits) {
    const url = new URL(baseUrl);
    this.#basePath = url.pathname.replace(/\/+$/, '');
    this.#authorization = `Bearer ${apiKey}`;
    this.#pool = new Pool(url.origin, {
      connections: limits.connectionsMax,
      headersTimeout: limits.timeoutMs,
      bodyTimeout: limits.idleTimeoutMs,
      keepAliveTimeout: 30_000,
      connect: { timeout: Math.min(limits.timeoutMs, 10_000) },
    });
  }

  /**
   * headersTimeoutMs: a stream's headers come at once, so the usual limit applies; a
   * non-streaming answer's headers come only when the whole generation is done, and giving up
   * earlier would leave a generation the upstream bills but we can never look up (no id yet).
   */
  chatCompletions(body: string, signal: AbortSignal, headersTimeoutMs?: number): Promise<UpstreamResponse> {
    return this.send('POST', '/chat/completions', signal, body, headersTimeoutMs);
  }

  /** Any other metered endpoint (responses, messages, completions, embeddings): same rules. */
  post(path: string, body: string, signal: AbortSignal, headersTimeoutMs?: number): Promise<UpstreamResponse> {
    return this.send('POST', path, signal, body, headersTimeoutMs);
  }

  generation(id: string, signal: AbortSignal): Promise<UpstreamResponse> {
    return this.send('GET', `/generation?id=${encodeURIComponent(id)}`, signal);
  }

  /** `query`: e.g. `output_modalities=all` (the price book also needs embedding models' prices). */
  models(signal: AbortSignal, query?: string): Promise<UpstreamResponse> {
    return this.send('GET', query === undefined ? '/models' : `/models?${query}`, signal);
  }

  close(): Promise<void> {
    return this.#pool.close();
  }

  private async send(method: 'GET' | 'POST', path: string, signal: AbortSignal, body?: string, headersTimeoutMs?: number): Promise<UpstreamResponse> {
    const headers: Record<string, string> = { authorization: this.#authorization, accept: '*/*' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    try {
      const response = await this.#pool.request({
        method, path: this.#basePath + path, headers, body, signal,
        headersTimeout: headersTimeoutMs ?? this.limits.timeoutMs,
      });
      return { status: response.statusCode, headers: response.headers, body: response.body };
    } catch (error) {
      throw upstreamError(error);
    }
  }
}

/** Maps undici's failures (by error class and code) to our operating errors. */
export function upstreamError(error: unknown): unknown {
  // AbortSignal.timeout() (our duration limit) rejects with a DOMException named TimeoutError.
  if (error instanceof undiciErrors.HeadersTimeoutError || error instanceof undiciErrors.BodyTimeoutError ||
      error instanceof undiciErrors.ConnectTimeoutError || (error as { name?: unknown })?.name === 'TimeoutError') {
    return new MetergateError('upstream_timeout', 'the upstream provider did not answer in time', { cause: error });
  }
  if (error instanceof undiciErrors.RequestAbortedError || (error as { name?: string })?.name === 'AbortError') {
    return error;
  }
  return new MetergateError('upstream_unreachable', 'the upstream provider could not be reached', { cause: error });
}

const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/** True when the request provably never reached the provider (so nothing can be billed). */
export function neverReachedUpstream(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && typeof current === 'object' && current !== null; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECT_FAILURES.has(code)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}
