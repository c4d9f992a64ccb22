import type { RequestHandler } from 'express';

const FIVE_MINUTES_S = 5 * 60;

/**
 * Bolt verifies Slack's signature and rejects stale timestamps, but not ones from the future. A request
 * dated more than five minutes either side of now is refused before it reaches Bolt.
 */
export function rejectSlackClockSkew(now: () => number): RequestHandler {
  return (req, res, next) => {
    const header = req.get('x-slack-request-timestamp');
    const ts = header ? Number(header) : Number.NaN;
    if (!Number.isFinite(ts) || Math.abs(now() / 1000 - ts) > FIVE_MINUTES_S) {
      res.status(401).json({ error: 'missing or stale Slack request timestamp' });
      return;
    }
    next();
  };
}
