import { type IncidentData, incidentDataOf, type WebhookEvent } from '../pagerduty/webhook.js';
import type { Incident } from './model.js';

/**
 * Folds one incident webhook into the stored incident. Every incident event carries the whole incident,
 * so the newest event wins; a redelivered or late older event changes nothing.
 */
export function applyIncidentEvent(
  previous: Incident | undefined,
  event: WebhookEvent,
): Incident | undefined {
  const data = incidentDataOf(event);
  if (!data) return previous;
  if (previous && Date.parse(event.occurred_at) < Date.parse(previous.lastEventAt)) return previous;
  const resolved = event.event_type === 'incident.resolved';
  const reopened = event.event_type === 'incident.reopened';
  return {
    ...fromData(data, previous),
    status: resolved ? 'resolved' : (data.status ?? previous?.status ?? 'triggered'),
    resolvedAt: resolved ? event.occurred_at : reopened ? null : (previous?.resolvedAt ?? null),
    resolvedBy: resolved ? (event.agent?.summary ?? null) : reopened ? null : (previous?.resolvedBy ?? null),
    lastEventAt: event.occurred_at,
  };
}

function fromData(data: IncidentData, previous: Incident | undefined) {
  return {
    id: data.id,
    number: data.number ?? previous?.number ?? null,
    title: data.title ?? previous?.title ?? '(untitled incident)',
    serviceId: data.service?.id ?? previous?.serviceId ?? 'unknown',
    serviceName: data.service?.summary ?? previous?.serviceName ?? 'unknown service',
    // priority: null is meaningful (no priority), absent means "not in this payload".
    priority: data.priority === undefined ? (previous?.priority ?? null) : (data.priority?.summary ?? null),
    urgency: data.urgency ?? previous?.urgency ?? null,
    htmlUrl: data.html_url ?? previous?.htmlUrl ?? null,
    createdAt: data.created_at ?? previous?.createdAt ?? null,
  };
}
