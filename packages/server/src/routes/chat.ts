import { Router } from 'express';
import { requireUser } from '../auth/middleware.js';
import { parseChatBody } from '../billing/chat-body.js';
import { meteredCall } from '../billing/metered-call.js';
import { MetergateError } from '../errors.js';
import { assertModelsAllowed, type CallerRules } from '../controls/model-rules.js';
import { jsonBody } from '../http/json-body.js';
import { withIdempotency } from '../idempotency/idempotent-call.js';
import { idempotencyKeyOf } from '../idempotency/key-header.js';
import type { Services } from '../services.js';

export function chatRoutes(services: Services): Router {
  const router = Router();
  const auth = requireUser(services);
  const body = jsonBody(services);
  for (const path of ['/v1/chat/completions', '/api/v1/chat/completions']) {
    router.post(path, auth, body, async (req, res) => {
      if (services.lifecycle.draining) {
        // The client should reconnect elsewhere rather than keep this connection alive.
        res.setHeader('connection', 'close');
        throw new MetergateError('draining', 'this replica is shutting down; retry on another', { retryAfterS: 1 });
      }
      const chat = parseChatBody(req.body);
      // A model the user or key may not use: 403 before anything is admitted, held or sent.
      assertModelsAllowed(res.locals.modelRules as CallerRules, chat.raw);
      const keyId = res.locals.keyId as string;
      const key = idempotencyKeyOf(req);
      const requestId = res.locals.requestId as string;
      const userId = res.locals.userId as string;
      services.lifecycle.inFlight += 1;
      try {
        if (key === null) {
          await meteredCall(services, { requestId, userId, keyId, chat, res });
        } else {
          await withIdempotency(services, { userId, key, requestId, body: req.body, stream: chat.stream }, res,
            (recorder) => meteredCall(services, { requestId, userId, keyId, chat, res, onUnsent: (...body) => recorder.unsent(...body) }));
        }
      } finally {
        services.lifecycle.inFlight -= 1;
      }
    });
  }
  return router;
}
