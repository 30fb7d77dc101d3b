import { Router } from 'express';
import { pendingMigrations } from '@metergate/db';
import type { Services } from '../services.js';

/** Liveness, readiness and Prometheus metrics; unauthenticated, as load balancers expect. */
export function opsRoutes(services: Services): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', replica: services.config.replicaId });
  });
  router.get('/readyz', async (_req, res) => {
    if (services.lifecycle.draining) {
      res.status(503).json({ status: 'draining' });
      return;
    }
    try {
      const pending = await pendingMigrations(services.pools.write, [...services.migrations]);
      if (pending.length > 0) {
        res.status(503).json({ status: 'migrations_pending', pending });
        return;
      }
      res.json({ status: 'ready' });
    } catch (error) {
      services.log.warn({ err: error }, 'readiness check failed');
      res.status(503).json({ status: 'database_unreachable' });
    }
  });
  router.get('/metrics', async (_req, res) => {
    res.type(services.metrics.registry.contentType).send(await services.metrics.registry.metrics());
  });
  return router;
}
