import { Router } from 'express';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { Store } from '../store/store.js';

/**
 * /healthz: the process is alive. /readyz: the store takes writes and we are not shutting down. Both are
 * unauthenticated, so a failure answers with a generic reason; what went wrong goes to the log.
 */
export function healthRouter(deps: { store: Store; accepting: () => boolean; logger: Logger }): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    if (!deps.accepting()) {
      res.status(503).json({ status: 'not ready', reason: 'shutting down' });
      return;
    }
    try {
      await deps.store.ping();
      res.json({ status: 'ready' });
    } catch (err) {
      deps.logger.warn({ err: errorMessage(err) }, 'not ready: the store does not take writes');
      res.status(503).json({ status: 'not ready', reason: 'store unavailable' });
    }
  });
  return router;
}
