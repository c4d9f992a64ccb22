import express, {
  type ErrorRequestHandler,
  type Express,
  type Request,
  type RequestHandler,
  type Response,
} from 'express';
import type { Logger } from 'pino';
import type { WebhookOutcome } from '../metrics.js';
import {
  signatureCandidates,
  verifyPagerDutySignature,
  verifySharedSecret,
  webhookAuth,
} from '../pagerduty/signature.js';
import { envelopeSchema, incidentIdOf, type WebhookEvent } from '../pagerduty/webhook.js';
import { recordEvent } from '../postmortems/intake.js';
import type { ReceivedEvent, Store } from '../store/store.js';

export const MAX_WEBHOOK_BYTES = 1024 * 1024;
export const WEBHOOK_PATH = '/webhooks/pagerduty';

/**
 * The answers to a stored, duplicate or ignored event, serialized once: they are the same for every
 * webhook, and written straight to the response (no per-request JSON, content type lookup or ETag hash).
 */
const WEBHOOK_ANSWER = {
  recorded: { status: 202, body: Buffer.from(JSON.stringify({ status: 'accepted' })) },
  duplicate: { status: 200, body: Buffer.from(JSON.stringify({ status: 'duplicate' })) },
  expired: { status: 200, body: Buffer.from(JSON.stringify({ status: 'ignored' })) },
} as const;

/** How each answer counts in /metrics. */
const WEBHOOK_OUTCOME = { recorded: 'accepted', duplicate: 'duplicate', expired: 'ignored' } as const;

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
  /** Told how each request was answered (metrics). */
  answered?: (outcome: WebhookOutcome) => void;
  /** Told of each verified request (the job queue holds back in a flood: IntakeFirst). */
  arrived?: () => void;
}

/** Header values are chosen by whoever sends the request: only this much of one reaches a log line. */
export const MAX_LOGGED_HEADER_CHARS = 100;

export function headerForLog(value: string | undefined): string | undefined {
  if (value === undefined || value.length <= MAX_LOGGED_HEADER_CHARS) return value;
  return `${value.slice(0, MAX_LOGGED_HEADER_CHARS)}… (${value.length} characters)`;
}

/**
 * POST /webhooks/pagerduty: verify, parse, record durably, answer. Nothing here waits on Slack or Devin;
 * the stored event is processed by the job queue. Status codes follow PagerDuty's retry rules: 4xx only
 * for requests that can never succeed, 5xx for our own temporary trouble (it retries those for 48 h).
 * Mounted on the app itself, not as a router of its own: it is the route under load, and a nested
 * router is one more layer walked on every request.
 */
export function mountPagerDutyWebhook(app: Express, deps: PagerDutyWebhookDeps): void {
  const auth = webhookAuth(deps.webhookSecrets, deps.sharedSecret);
  const count = deps.answered ?? (() => {});
  const arrived = deps.arrived ?? (() => {});
  // Each line carries the request's X-Webhook-Id: fields of the line, not a child logger per request
  // (which would cost an allocation and a serialization for every webhook, logged or not).
  const refuse = (res: Response, webhookId: string | undefined, why: string) => {
    deps.logger.warn({ webhookId, scheme: auth.scheme }, `webhook rejected: ${why}`);
    count('bad_signature');
    res.status(401).json({ error: 'invalid or missing signature' });
  };

  /**
   * Everything that can be decided from the headers, before a byte of the body is read: shutting down,
   * the shared header (it does not depend on the body), a signature header with no usable entry. A
   * request refused here costs no body buffering, and its connection is not kept for more.
   */
  const beforeBody: RequestHandler = (req, res, next) => {
    const webhookId = headerForLog(req.get('x-webhook-id'));
    res.locals.webhookId = webhookId;
    if (!deps.accepting()) {
      count('shutting_down');
      res.status(503).set('retry-after', '5').set('connection', 'close').json({ error: 'shutting down' });
      return;
    }
    if (auth.scheme === 'shared_header') {
      if (!verifySharedSecret(req.get('x-webhook-secret'), auth.secret)) {
        res.set('connection', 'close');
        return refuse(res, webhookId, 'no valid X-Webhook-Secret header');
      }
    } else if (signatureCandidates(req.get('x-pagerduty-signature')).length === 0) {
      res.set('connection', 'close');
      return refuse(res, webhookId, 'no X-PagerDuty-Signature header with a v1= entry');
    }
    next();
  };

  app.post(
    WEBHOOK_PATH,
    beforeBody,
    // Raw bytes: the signature is over the body exactly as sent, never over re-serialized JSON.
    express.raw({ type: () => true, limit: MAX_WEBHOOK_BYTES }),
    async (req: Request, res: Response) => {
      const raw: Buffer = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const webhookId = res.locals.webhookId as string | undefined;
      if (
        auth.scheme === 'signature' &&
        !verifyPagerDutySignature(raw, req.get('x-pagerduty-signature'), auth.secrets)
      ) {
        return refuse(res, webhookId, 'no valid signature');
      }
      arrived();
      const read = readWebhookBody(raw, deps.now());
      if ('error' in read) {
        count('invalid');
        res.status(400).json({ error: read.error });
        return;
      }
      const { event } = read;
      try {
        const outcome = await recordEvent(deps.store, event, {
          now: deps.now,
          retentionMs: deps.retentionMs,
        });
        deps.logger.info(
          { webhookId, eventId: event.id, eventType: event.type, outcome },
          'webhook received',
        );
        count(WEBHOOK_OUTCOME[outcome]);
        const answer = WEBHOOK_ANSWER[outcome];
        res.writeHead(answer.status, {
          'content-type': 'application/json; charset=utf-8',
          'content-length': answer.body.length,
        });
        res.end(answer.body);
      } catch (err) {
        deps.logger.error(
          { webhookId, err: (err as Error).message, eventId: event.id },
          'could not store webhook event',
        );
        count('store_unavailable');
        res.status(503).set('retry-after', '5').json({ error: 'temporarily unable to store the event' });
      }
    },
  );
  const bodyErrors: ErrorRequestHandler = (err, _req, res, next) => {
    const status = (err as { status?: number }).status;
    if (status && status >= 400 && status < 500) count('invalid');
    if (status === 413) res.status(413).json({ error: `body larger than ${MAX_WEBHOOK_BYTES} bytes` });
    else if (status && status >= 400 && status < 500)
      res.status(400).json({ error: 'unreadable request body' });
    else next(err);
  };
  app.use(WEBHOOK_PATH, bodyErrors);
}

/**
 * A verified body as the event to store, or why it is not a v3 webhook. Synchronous on purpose: the parsed
 * JSON (a body may be 1 MiB) is garbage once this returns, so while the store commits, a request holds
 * only the body's text, the one copy that is stored exactly as PagerDuty signed it.
 */
function readWebhookBody(raw: Buffer, receivedAt: number): { event: ReceivedEvent } | { error: string } {
  const payload = raw.toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(payload);
  } catch {
    return { error: 'body is not JSON' };
  }
  const parsed = envelopeSchema.safeParse(json);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    const where = first?.path.map(String).join('.') || 'body';
    return { error: `not a PagerDuty v3 webhook: ${where}: ${first?.message ?? 'invalid'}` };
  }
  const event: WebhookEvent = {
    ...parsed.data.event,
    occurred_at: parsed.data.event.occurred_at ?? new Date(receivedAt).toISOString(),
  };
  return {
    event: {
      id: event.id,
      type: event.event_type,
      incidentId: incidentIdOf(event) ?? null,
      occurredAt: event.occurred_at,
      receivedAt,
      payload,
    },
  };
}
