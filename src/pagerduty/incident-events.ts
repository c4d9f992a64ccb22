import type { IncidentEvent } from '../postmortems/incident.js';
import type { StoredEventReading } from '../postmortems/ports.js';
import type { ReceivedEvent } from '../store/store.js';
import { envelopeSchema, INCIDENT_STATE_EVENTS, incidentDataOf, type WebhookEvent } from './webhook.js';

/**
 * The most of a text field an incident keeps. Nothing shows more (Slack cuts titles to 500 characters, the
 * prompt to 1,000), and a run carries its incident in every read: a 1 MiB title kept whole would cost
 * megabytes of heap per run in every job and every follower tick.
 */
export const MAX_INCIDENT_TEXT = 2000;

function bounded<T extends string | null | undefined>(text: T): T {
  if (typeof text !== 'string' || text.length <= MAX_INCIDENT_TEXT) return text;
  return `${text.slice(0, MAX_INCIDENT_TEXT - 1).toWellFormed()}…` as T;
}

/** A v3 webhook event as the domain's IncidentEvent, or undefined when it carries no usable incident. */
export function incidentEventOf(event: WebhookEvent): IncidentEvent | undefined {
  const data = incidentDataOf(event);
  if (!data) return undefined;
  return {
    kind:
      event.event_type === 'incident.resolved'
        ? 'resolved'
        : event.event_type === 'incident.reopened'
          ? 'reopened'
          : 'state',
    occurredAt: event.occurred_at,
    agent: bounded(event.agent?.summary ?? null),
    incident: {
      id: data.id,
      number: data.number,
      title: bounded(data.title),
      status: data.status,
      serviceId: data.service?.id,
      serviceName: bounded(data.service?.summary),
      priority: data.priority === undefined ? undefined : bounded(data.priority?.summary ?? null),
      urgency: bounded(data.urgency),
      htmlUrl: bounded(data.html_url),
      createdAt: data.created_at,
    },
  };
}

/**
 * Reads a stored webhook event (the body exactly as PagerDuty sent it) through the same tolerant schema
 * as at intake: only events that carry the incident's state concern the lifecycle.
 */
export function readStoredEvent(stored: ReceivedEvent): StoredEventReading {
  const parsed = envelopeSchema.safeParse(JSON.parse(stored.payload));
  if (!parsed.success) return { kind: 'no_action', type: 'unparseable' };
  const event: WebhookEvent = { ...parsed.data.event, occurred_at: stored.occurredAt };
  if (!INCIDENT_STATE_EVENTS.has(event.event_type) || !stored.incidentId) {
    return { kind: 'no_action', type: event.event_type };
  }
  const incidentEvent = incidentEventOf(event);
  return incidentEvent
    ? { kind: 'incident', type: event.event_type, event: incidentEvent }
    : { kind: 'unusable', type: event.event_type };
}
