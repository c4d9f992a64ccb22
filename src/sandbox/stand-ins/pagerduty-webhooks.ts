import { randomUUID } from 'node:crypto';
import { signPagerDutyBody } from '../../pagerduty/signature.js';

/**
 * PagerDuty's sending side of Generic Webhooks (v3): the event envelope it posts and the way it signs it
 * (developer.pagerduty.com/docs/webhooks-overview, .../verifying-signatures).
 */

export interface WebhookIncident {
  id: string;
  number: number;
  title: string;
  status: 'triggered' | 'acknowledged' | 'resolved';
  priority: string | null;
  urgency: 'high' | 'low';
  service: { id: string; name: string };
  createdAt: string;
  /** Who is on it (the webhook lists assignees until the incident resolves). */
  assignee: { id: string; name: string };
}

export type IncidentEventType =
  | 'incident.triggered'
  | 'incident.acknowledged'
  | 'incident.priority_updated'
  | 'incident.resolved';

const ACCOUNT = 'https://acme.pagerduty.com';
const API = 'https://api.pagerduty.com';

function userReference(user: { id: string; name: string }) {
  return {
    html_url: `${ACCOUNT}/users/${user.id}`,
    id: user.id,
    self: `${API}/users/${user.id}`,
    summary: user.name,
    type: 'user_reference',
  };
}

/** One v3 webhook envelope for an incident event, shaped as PagerDuty sends it. */
export function incidentEvent(
  type: IncidentEventType,
  incident: WebhookIncident,
  options: { occurredAt: string; agent: { id: string; name: string } | null; eventId?: string },
): { event: Record<string, unknown> } {
  return {
    event: {
      id: options.eventId ?? randomUUID(),
      event_type: type,
      resource_type: 'incident',
      occurred_at: options.occurredAt,
      agent: options.agent ? userReference(options.agent) : null,
      client: null,
      data: {
        id: incident.id,
        type: 'incident',
        self: `${API}/incidents/${incident.id}`,
        html_url: `${ACCOUNT}/incidents/${incident.id}`,
        number: incident.number,
        status: incident.status,
        incident_key: null,
        created_at: incident.createdAt,
        title: incident.title,
        incident_type: { name: 'incident_default' },
        service: {
          html_url: `${ACCOUNT}/services/${incident.service.id}`,
          id: incident.service.id,
          self: `${API}/services/${incident.service.id}`,
          summary: incident.service.name,
          type: 'service_reference',
        },
        // Resolved events carry no assignees.
        assignees: incident.status === 'resolved' ? [] : [userReference(incident.assignee)],
        escalation_policy: {
          html_url: `${ACCOUNT}/escalation_policies/PEPDEMO`,
          id: 'PEPDEMO',
          self: `${API}/escalation_policies/PEPDEMO`,
          summary: `${incident.service.name} on-call`,
          type: 'escalation_policy_reference',
        },
        teams: [],
        priority: incident.priority
          ? {
              html_url: `${ACCOUNT}/account/incident_priorities`,
              id: `PPRI${incident.priority.replace(/\W/g, '')}`,
              self: `${API}/priorities/PPRI${incident.priority.replace(/\W/g, '')}`,
              summary: incident.priority,
              type: 'priority_reference',
            }
          : null,
        urgency: incident.urgency,
        conference_bridge: null,
        resolve_reason: null,
      },
    },
  };
}

/**
 * Posts one webhook to `${appUrl}/webhooks/pagerduty` as PagerDuty does: the raw JSON body, its HMAC-SHA256
 * in X-PagerDuty-Signature, PagerDuty's user agent and delivery headers.
 */
export function postPagerDutyWebhook(
  appUrl: string,
  rawBody: string,
  options: { secret: string; signature?: string; headers?: Record<string, string> },
): Promise<Response> {
  return fetch(`${appUrl}/webhooks/pagerduty`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'user-agent': 'PagerDuty-Webhook/V3.0',
      'x-webhook-id': randomUUID(),
      'x-webhook-subscription': 'PSUBDEMO',
      'x-pagerduty-signature': options.signature ?? signPagerDutyBody(rawBody, options.secret),
      ...options.headers,
    },
    body: rawBody,
  });
}
