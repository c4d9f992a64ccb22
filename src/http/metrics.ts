import { timingSafeEqual } from 'node:crypto';
import { Router } from 'express';

/**
 * GET /metrics in Prometheus's text format. With METRICS_TOKEN set, only `Authorization: Bearer <token>`
 * gets it (compared in constant time); without, anyone who reaches the port does, so keep it off the
 * public route (see README, Operating it).
 */
export function metricsRouter(deps: {
  metrics: { render(): Promise<string>; contentType: string };
  token: string | undefined;
}): Router {
  const router = Router();
  const expected = deps.token === undefined ? undefined : Buffer.from(`Bearer ${deps.token}`);
  router.get('/metrics', async (req, res) => {
    if (expected) {
      const given = Buffer.from(req.get('authorization') ?? '');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        res.status(401).set('www-authenticate', 'Bearer realm="metrics"').json({ error: 'unauthorized' });
        return;
      }
    }
    res.set('content-type', deps.metrics.contentType).send(await deps.metrics.render());
  });
  return router;
}
