import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import { dashboardRoutes } from '../dashboard/router.js';
import { MetergateError } from '../errors.js';
import { adminRoutes } from '../routes/admin.js';
import { adminHoldRoutes } from '../routes/admin-holds.js';
import { adminControlsRoutes } from '../routes/admin-controls.js';
import { adminWebhookRoutes } from '../routes/admin-webhooks.js';
import { adminReportRoutes } from '../routes/admin-reports.js';
import { chatRoutes } from '../routes/chat.js';
import { compatRoutes } from '../routes/openrouter-compat.js';
import { opsRoutes } from '../routes/ops.js';
import type { Services } from '../services.js';
import { errorHandler } from './error-handler.js';

export function createApp(services: Services, adminToken: string): Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(requestContext(services));
  app.use(opsRoutes(services, adminToken));
  app.use(chatRoutes(services));
  app.use(compatRoutes(services));
  app.use(dashboardRoutes()); // public static shell only; before the admin API's token check
  app.use(adminReportRoutes(services, adminToken)); // ledger, usage, users and requests lists, pricing
  app.use(adminHoldRoutes(services, adminToken)); // settle / void stuck requests, the price book
  app.use(adminControlsRoutes(services, adminToken)); // limits, model lists and rate limits per user and key
  app.use(adminWebhookRoutes(services, adminToken)); // webhooks, their delivery log, low-balance alerts
  app.use(adminRoutes(services, adminToken));
  app.use((req: Request) => {
    throw new MetergateError('not_found', `no route ${req.method} ${req.path}`);
  });
  app.use(errorHandler(services.log, services.metrics));
  return app;
}

/** A request id per request (header and logs), and one log line plus metrics at the end. */
function requestContext(services: Services) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const requestId = randomUUID();
    const started = performance.now();
    res.locals.requestId = requestId;
    res.locals.log = services.log.child({ requestId });
    res.setHeader('x-request-id', requestId);
    res.once('close', () => {
      const route = req.route === undefined ? 'unmatched' : `${req.baseUrl}${String(req.route.path)}`;
      const seconds = (performance.now() - started) / 1000;
      const status = res.headersSent ? res.statusCode : 499;
      services.metrics.httpRequests.inc({ route, method: req.method, status: String(status) });
      services.metrics.httpDuration.observe({ route }, seconds);
      (res.locals.log as typeof services.log).info({
        method: req.method, path: req.path, status, ms: Math.round(seconds * 1000),
        user: res.locals.userId, finished: res.writableFinished,
      }, 'request');
    });
    next();
  };
}
