import { Router, type NextFunction, type Request, type Response } from 'express';
import { bearerToken, tokensEqual } from '../auth/api-keys.js';
import { MetergateError } from '../errors.js';
import { ReadinessProbe } from '../readiness.js';
import type { Services } from '../services.js';

/**
 * Liveness, readiness and Prometheus metrics, as load balancers and Prometheus expect: health
 * and readiness unauthenticated; metrics too unless METRICS_TOKEN is set. Exact paths only:
 * Express would otherwise also answer /metrics/ and /METRICS, which a proxy's exact-match
 * block in front (nginx `location = /metrics`) does not catch.
 */
export function opsRoutes(services: Services, adminToken: string): Router {
  const router = Router({ caseSensitive: true, strict: true });
  const readiness = new ReadinessProbe(services.pools.write, services.migrations, services.config.readinessCacheMs, services.log);
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', replica: services.config.replicaId });
  });
  router.get('/readyz', async (_req, res) => {
    if (services.lifecycle.draining) {
      res.status(503).json({ status: 'draining' });
      return;
    }
    const result = await readiness.check();
    if (result.ready) res.json({ status: 'ready' });
    else if (result.status === 'migrations_pending') res.status(503).json({ status: result.status, pending: result.pending });
    else res.status(503).json({ status: result.status });
  });
  router.get('/metrics', requireMetricsToken(services.config.metricsToken, adminToken), async (_req, res) => {
    res.type(services.metrics.registry.contentType).send(await services.metrics.registry.metrics());
  });
  return router;
}

/** With METRICS_TOKEN set: that token or the admin token (the dashboard's), compared in constant time. */
function requireMetricsToken(metricsToken: string | null, adminToken: string) {
  return (req: Request, _res: Response, next: NextFunction): void => {
    if (metricsToken !== null) {
      const token = bearerToken(req.headers.authorization);
      // Both compared, always: how long a refusal takes says nothing about which one was near.
      const metricsOk = token !== null && tokensEqual(token, metricsToken);
      const adminOk = token !== null && tokensEqual(token, adminToken);
      if (!metricsOk && !adminOk) throw new MetergateError('invalid_api_key', 'metrics token required: send "Authorization: Bearer <METRICS_TOKEN>"');
    }
    next();
  };
}
