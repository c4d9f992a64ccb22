import type { Incident } from './model.js';

/**
 * An incident event in the domain's terms: what PagerDuty's webhook said about the incident, read by the
 * PagerDuty adapter (src/pagerduty/incident-events.ts). Fields absent from the payload are undefined;
 * `priority: null` means "explicitly no priority".
 */
export interface IncidentEvent {
  /** resolved and reopened change what the incident's resolve fields mean; every other kind carries state. */
  kind: 'resolved' | 'reopened' | 'state';
  occurredAt: string;
  /** Who caused it (for resolved: who resolved the incident), when PagerDuty says. */
  agent: string | null;
  incident: {
    id: string;
    number?: number | null | undefined;
    title?: string | null | undefined;
    status?: string | null | undefined;
    serviceId?: string | undefined;
    serviceName?: string | null | undefined;
    priority?: string | null | undefined;
    urgency?: string | null | undefined;
    htmlUrl?: string | null | undefined;
    createdAt?: string | null | undefined;
  };
}

/** The service ID of an incident whose events never named its service. */
export const UNKNOWN_SERVICE_ID = 'unknown';

/**
 * Folds one incident event into the stored incident. Every incident event carries the whole incident,
 * so the newest event wins; a redelivered or late older event changes nothing.
 */
export function applyIncidentEvent(previous: Incident | undefined, event: IncidentEvent): Incident {
  if (previous && Date.parse(event.occurredAt) < Date.parse(previous.lastEventAt)) return previous;
  const data = event.incident;
  const resolved = event.kind === 'resolved';
  const reopened = event.kind === 'reopened';
  return {
    id: data.id,
    number: data.number ?? previous?.number ?? null,
    title: data.title ?? previous?.title ?? '(untitled incident)',
    serviceId: data.serviceId ?? previous?.serviceId ?? UNKNOWN_SERVICE_ID,
    serviceName: data.serviceName ?? previous?.serviceName ?? 'unknown service',
    // priority: null is meaningful (no priority), absent means "not in this payload".
    priority: data.priority === undefined ? (previous?.priority ?? null) : data.priority,
    urgency: data.urgency ?? previous?.urgency ?? null,
    htmlUrl: data.htmlUrl ?? previous?.htmlUrl ?? null,
    createdAt: data.createdAt ?? previous?.createdAt ?? null,
    status: resolved ? 'resolved' : (data.status ?? previous?.status ?? 'triggered'),
    resolvedAt: resolved ? event.occurredAt : reopened ? null : (previous?.resolvedAt ?? null),
    resolvedBy: resolved ? event.agent : reopened ? null : (previous?.resolvedBy ?? null),
    lastEventAt: event.occurredAt,
  };
}
