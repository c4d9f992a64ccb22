import { z } from 'zod';

/**
 * PagerDuty Generic Webhooks (v3). One event per POST. Tolerant by design: unknown fields pass through,
 * optional ones may be null or absent, and unknown event types are accepted (and ignored later).
 */

const reference = z.looseObject({
  id: z.string().optional(),
  summary: z.string().nullish(),
  html_url: z.string().nullish(),
  type: z.string().nullish(),
});

/**
 * Once the signature proves a request came from PagerDuty, only what identifies the event is required:
 * PagerDuty drops a delivery answered 4xx and disables the subscription after three in a row, so a field
 * that changes shape must not cost us events. Everything else is read defensively where it is used.
 */
export const envelopeSchema = z.object({
  event: z.looseObject({
    id: z.string().min(1).max(200),
    event_type: z.string().min(1).max(200),
    occurred_at: z
      .unknown()
      .optional()
      .transform((v) => (typeof v === 'string' && !Number.isNaN(Date.parse(v)) ? v : null)),
    agent: reference.nullish().catch(null),
    data: z.unknown(),
  }),
});

export type WebhookEnvelope = z.infer<typeof envelopeSchema>;
/** A stored event: occurred_at is filled with the time of receipt when PagerDuty's is missing or unreadable. */
export interface WebhookEvent {
  id: string;
  event_type: string;
  occurred_at: string;
  agent?: z.infer<typeof reference> | null;
  data: unknown;
  [field: string]: unknown;
}

const incidentDataSchema = z.looseObject({
  id: z.string().min(1),
  type: z.literal('incident').optional(),
  html_url: z.string().nullish(),
  number: z.number().int().nullish(),
  status: z.string().nullish(),
  incident_key: z.string().nullish(),
  created_at: z.string().nullish(),
  title: z.string().nullish(),
  service: reference.nullish(),
  priority: reference.nullish(),
  urgency: z.string().nullish(),
});

export type IncidentData = z.infer<typeof incidentDataSchema>;

/** Event types that carry the incident's current state. */
export const INCIDENT_STATE_EVENTS = new Set([
  'incident.triggered',
  'incident.acknowledged',
  'incident.unacknowledged',
  'incident.priority_updated',
  'incident.reopened',
  'incident.resolved',
  'incident.reassigned',
  'incident.escalated',
  'incident.delegated',
]);

export function incidentDataOf(event: WebhookEvent): IncidentData | undefined {
  if (!event.event_type.startsWith('incident.')) return undefined;
  const parsed = incidentDataSchema.safeParse(event.data);
  return parsed.success ? parsed.data : undefined;
}

/** The incident ID an event is about, for ordering its processing; undefined for non-incident events. */
export function incidentIdOf(event: WebhookEvent): string | undefined {
  if (!event.event_type.startsWith('incident.')) return undefined;
  // Most incident events carry the incident itself; a few (annotated) carry {incident: {id}}.
  const data = event.data as { id?: unknown; incident?: { id?: unknown } } | null | undefined;
  if (typeof data?.incident?.id === 'string') return data.incident.id;
  return typeof data?.id === 'string' ? data.id : undefined;
}
