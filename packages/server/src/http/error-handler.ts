import type { NextFunction, Request, Response } from 'express';
import { BarrierBusyError, isDatabaseUnavailable, PoolTimeoutError } from '@metergate/db';
import { MetergateError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

/** body-parser's error `type`s (stable identifiers, not messages) to our codes. */
const BODY_ERRORS: Record<string, () => MetergateError> = {
  'entity.too.large': () => new MetergateError('payload_too_large', 'the request body exceeds the size limit'),
  'entity.parse.failed': () => new MetergateError('invalid_json', 'the request body is not valid JSON'),
  'encoding.unsupported': () => new MetergateError('invalid_request', 'unsupported content encoding'),
  'charset.unsupported': () => new MetergateError('invalid_request', 'unsupported charset; send UTF-8 JSON'),
  'request.aborted': () => new MetergateError('invalid_request', 'the request body was not received in full'),
};

/** Any error → OpenAI's error shape; operating errors keep their code, bugs become 500. */
export function toMetergateError(error: unknown, metrics: Metrics): MetergateError {
  if (error instanceof MetergateError) return error;
  if (error instanceof BarrierBusyError) {
    metrics.barrierBusy.inc({ reason: error.reason });
    return new MetergateError('barrier_busy', `too many concurrent calls for this user or replica (${error.reason}); retry shortly`, { retryAfterS: error.retryAfterS, cause: error });
  }
  const type = (error as { type?: unknown } | null)?.type;
  if (typeof type === 'string' && type in BODY_ERRORS) return BODY_ERRORS[type]!();
  // The router's decodeURIComponent of a path parameter (it marks the URIError with status 400).
  if (error instanceof URIError && (error as { status?: unknown }).status === 400) {
    return new MetergateError('invalid_request', 'a path segment is not valid percent-encoded UTF-8', { cause: error });
  }
  if (error instanceof PoolTimeoutError || isDatabaseUnavailable(error)) {
    return new MetergateError('database_unavailable', 'the database is unavailable; retry shortly', { retryAfterS: 1, cause: error });
  }
  return new MetergateError('internal_error', 'internal error', { cause: error });
}

export function errorHandler(log: Logger, metrics: Metrics) {
  return (error: unknown, _req: Request, res: Response, _next: NextFunction): void => {
    const mapped = toMetergateError(error, metrics);
    const requestLog = (res.locals.log as Logger | undefined) ?? log;
    if (mapped.code === 'internal_error') requestLog.error({ err: error }, 'unhandled error');
    else requestLog.info({ code: mapped.code, err: mapped.status >= 500 ? error : undefined }, mapped.message);
    if (res.headersSent) {
      // Mid-response: the status is gone; end the connection so the client sees a failure.
      res.destroy();
      return;
    }
    if (mapped.options.retryAfterS !== undefined) res.setHeader('retry-after', String(mapped.options.retryAfterS));
    for (const [name, value] of Object.entries(mapped.options.headers ?? {})) res.setHeader(name, value);
    // /messages answers in Anthropic's shape, which its clients parse (routes/chat.ts sets it).
    res.status(mapped.status).json(res.locals.errorShape === 'anthropic' ? anthropicErrorBody(mapped) : mapped.toBody());
  };
}

/** Anthropic's error types by HTTP status (../shared/openrouter-endpoints.md). */
function anthropicType(status: number): string {
  if (status === 400 || status === 413 || status === 422) return 'invalid_request_error';
  if (status === 401) return 'authentication_error';
  if (status === 402) return 'billing_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status === 503 || status === 529) return 'overloaded_error';
  return 'api_error';
}

/** `{"type":"error","error":{"type","message"}}`, our stable code kept as `error_type`. */
export function anthropicErrorBody(error: MetergateError): Record<string, unknown> {
  return { type: 'error', error: { type: anthropicType(error.status), message: error.message, error_type: error.code }, request_id: null };
}
