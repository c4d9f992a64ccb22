import express, { type ErrorRequestHandler, type Request, type Response, Router } from 'express';
import type { Logger } from 'pino';
import { verifyPagerDutySignature, verifySharedSecret } from '../pagerduty/signature.js';
import { envelopeSchema, incidentIdOf, type WebhookEvent } from '../pagerduty/webhook.js';
import { recordEvent } from '../postmortems/intake.js';
import type { Store } from '../store/store.js';

export const MAX_WEBHOOK_BYTES = 1024 * 1024;

const WEBHOOK_STATUS = { recorded: 'accepted', duplicate: 'duplicate', expired: 'ignored' } as const;

export interface PagerDutyWebhookDeps {
  store: Store;
  logger: Logger;
  webhookSecrets: readonly string[];
  sharedSecret: string | undefined;
  now: () => number;
  /** DATA_RETENTION: an event older than this is a replay, ignored. */
  retentionMs: number;
  /** False while shutting down: answer 503 so PagerDuty redelivers to a live instance. */
  accepting: () => boolean;
}

/**
 * POST /webhooks/pagerduty: verify, parse, record durably, answer. Nothing here waits on Slack or Devin;
 * the stored event is processed by the job queue. Status codes follow PagerDuty's retry rules: 4xx only
 * for requests that can never succeed, 5xx for our own temporary trouble (it retries those for 48 h).
 */
export function pagerDutyWebhookRouter(deps: PagerDutyWebhookDeps): Router {
  const router = Router();
  router.post(
    '/webhooks/pagerduty',
    // Raw bytes: the signature is over the body exactly as sent, never over re-serialized JSON.
    express.raw({ type: () => true, limit: MAX_WEBHOOK_BYTES }),
    async (req: Request, res: Response) => {
      const raw: Buffer = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const log = deps.logger.child({ webhookId: req.get('x-webhook-id') });
      if (!deps.accepting()) {
        res.status(503).set('retry-after', '5').json({ error: 'shutting down' });
        return;
      }
      const signed = verifyPagerDutySignature(raw, req.get('x-pagerduty-signature'), deps.webhookSecrets);
      if (!signed && !verifySharedSecret(req.get('x-webhook-secret'), deps.sharedSecret)) {
        log.warn('webhook rejected: no valid signature');
        res.status(401).json({ error: 'invalid or missing signature' });
        return;
      }
      let json: unknown;
      try {
        json = JSON.parse(raw.toString('utf8'));
      } catch {
        res.status(400).json({ error: 'body is not JSON' });
        return;
      }
      const parsed = envelopeSchema.safeParse(json);
      if (!parsed.success) {
        const first = parsed.error.issues[0];
        const where = first?.path.map(String).join('.') || 'body';
        res
          .status(400)
          .json({ error: `not a PagerDuty v3 webhook: ${where}: ${first?.message ?? 'invalid'}` });
        return;
      }
      const receivedAt = deps.now();
      const event: WebhookEvent = {
        ...parsed.data.event,
        occurred_at: parsed.data.event.occurred_at ?? new Date(receivedAt).toISOString(),
      };
      // The body is stored exactly as PagerDuty signed it: no second serialization on the hot path.
      const payload = raw.toString('utf8');
      try {
        const outcome = await recordEvent(
          deps.store,
          {
            id: event.id,
            type: event.event_type,
            incidentId: incidentIdOf(event) ?? null,
            occurredAt: event.occurred_at,
            receivedAt,
            payload,
          },
          { now: deps.now, retentionMs: deps.retentionMs },
        );
        log.info({ eventId: event.id, eventType: event.event_type, outcome }, 'webhook received');
        res.status(outcome === 'recorded' ? 202 : 200).json({ status: WEBHOOK_STATUS[outcome] });
      } catch (err) {
        log.error({ err: (err as Error).message, eventId: event.id }, 'could not store webhook event');
        res.status(503).set('retry-after', '5').json({ error: 'temporarily unable to store the event' });
      }
    },
  );
  const bodyErrors: ErrorRequestHandler = (err, _req, res, next) => {
    const status = (err as { status?: number }).status;
    if (status === 413) res.status(413).json({ error: `body larger than ${MAX_WEBHOOK_BYTES} bytes` });
    else if (status && status >= 400 && status < 500)
      res.status(400).json({ error: 'unreadable request body' });
    else next(err);
  };
  router.use('/webhooks/pagerduty', bodyErrors);
  return router;
}
