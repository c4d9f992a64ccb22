import { Router } from 'express';
import type { Store } from '../store/store.js';

/** /healthz: the process is alive. /readyz: the store takes writes and we are not shutting down. */
export function healthRouter(deps: { store: Store; accepting: () => boolean }): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    if (!deps.accepting()) {
      res.status(503).json({ status: 'shutting down' });
      return;
    }
    try {
      await deps.store.ping();
      res.json({ status: 'ready' });
    } catch (err) {
      res.status(503).json({ status: 'store unavailable', error: (err as Error).message });
    }
  });
  return router;
}
