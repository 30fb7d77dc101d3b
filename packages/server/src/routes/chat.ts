import { Router, type NextFunction, type Request, type Response } from 'express';
import { requireUser } from '../auth/middleware.js';
import { ENDPOINTS } from '../billing/endpoints.js';
import type { Endpoint } from '../billing/endpoint.js';
import { meteredCall } from '../billing/metered-call.js';
import { MetergateError } from '../errors.js';
import { assertModelsAllowed, type CallerRules } from '../controls/model-rules.js';
import { jsonBody } from '../http/json-body.js';
import { withIdempotency } from '../idempotency/idempotent-call.js';
import { idempotencyKeyOf } from '../idempotency/key-header.js';
import type { Services } from '../services.js';

/**
 * Every metered endpoint (chat, responses, messages, completions, embeddings) under /v1 and
 * /api/v1, through one metering core; no other route reaches the upstream.
 */
export function chatRoutes(services: Services): Router {
  const router = Router();
  const body = jsonBody(services);
  for (const endpoint of ENDPOINTS) {
    // Anthropic's SDK sends its key as x-api-key (Claude Code as Bearer): both are accepted on
    // /messages, and its errors are Anthropic-shaped there, since that is what its clients parse.
    const anthropic = endpoint.errorShape === 'anthropic';
    const auth = requireUser(services, { apiKeyHeader: anthropic });
    const shape = (_req: Request, res: Response, next: NextFunction): void => {
      res.locals.errorShape = endpoint.errorShape;
      next();
    };
    for (const path of [`/v1${endpoint.path}`, `/api/v1${endpoint.path}`]) {
      router.post(path, shape, auth, body, (req, res) => handle(services, endpoint, req, res));
    }
  }
  return router;
}

async function handle(services: Services, endpoint: Endpoint, req: Request, res: Response): Promise<void> {
  if (services.lifecycle.draining) {
    // The client should reconnect elsewhere rather than keep this connection alive.
    res.setHeader('connection', 'close');
    throw new MetergateError('draining', 'this replica is shutting down; retry on another', { retryAfterS: 1 });
  }
  const chat = endpoint.read(req.body);
  // A model the user or key may not use: 403 before anything is admitted, held or sent.
  assertModelsAllowed(res.locals.modelRules as CallerRules, chat.raw);
  const keyId = res.locals.keyId as string;
  const key = idempotencyKeyOf(req);
  const requestId = res.locals.requestId as string;
  const userId = res.locals.userId as string;
  services.lifecycle.inFlight += 1;
  try {
    if (key === null) {
      await meteredCall(services, { requestId, userId, keyId, chat, endpoint, res });
    } else {
      // A key reused on another endpoint with the same body is a different request.
      const keyed = endpoint.name === 'chat' ? req.body : { endpoint: endpoint.name, body: req.body as unknown };
      await withIdempotency(services, {
        userId, key, requestId, body: keyed, stream: chat.stream && endpoint.stream !== null,
        chatShapedStream: endpoint.name === 'chat',
      }, res,
        (recorder) => meteredCall(services, { requestId, userId, keyId, chat, endpoint, res, onUnsent: (...sent) => recorder.unsent(...sent) }));
    }
  } finally {
    services.lifecycle.inFlight -= 1;
  }
}
