import { Router } from 'express';
import { requireUser } from '../auth/middleware.js';
import { parseChatBody } from '../billing/chat-body.js';
import { meteredCall } from '../billing/metered-call.js';
import { MetergateError } from '../errors.js';
import { jsonBody } from '../http/json-body.js';
import type { Services } from '../services.js';

export function chatRoutes(services: Services): Router {
  const router = Router();
  const auth = requireUser(services);
  const body = jsonBody(services);
  for (const path of ['/v1/chat/completions', '/api/v1/chat/completions']) {
    router.post(path, auth, body, async (req, res) => {
      if (services.lifecycle.draining) {
        throw new MetergateError('draining', 'this replica is shutting down; retry on another', { retryAfterS: 1 });
      }
      const chat = parseChatBody(req.body);
      services.lifecycle.inFlight += 1;
      try {
        await meteredCall(services, { requestId: res.locals.requestId as string, userId: res.locals.userId as string, chat, res });
      } finally {
        services.lifecycle.inFlight -= 1;
      }
    });
  }
  return router;
}
