import { describe, expect, it } from 'vitest';
import { incidentEventOf } from '../../src/pagerduty/incident-events.js';
import type { WebhookEvent } from '../../src/pagerduty/webhook.js';
import { applyIncidentEvent as applyDomainEvent } from '../../src/postmortems/incident.js';
import type { Incident } from '../../src/postmortems/model.js';
import { fixture, resolvedEvent } from '../helpers/harness.js';

/** A webhook event as the PagerDuty adapter reads it, folded by the domain. */
function applyIncidentEvent(previous: Incident | undefined, event: WebhookEvent): Incident | undefined {
  const read = incidentEventOf(event);
  return read ? applyDomainEvent(previous, read) : undefined;
}

describe('applyIncidentEvent', () => {
  it('builds the incident from a trigger, then takes the priority set later and the resolver', () => {
    const triggered = fixture('pagerduty/incident-triggered.json').event;
    let incident = applyIncidentEvent(undefined, triggered);
    expect(incident).toMatchObject({
      id: 'Q2K8TBZ1L3KJ7M',
      number: 4711,
      priority: null,
      status: 'triggered',
    });

    const updated = {
      ...triggered,
      id: 'e2',
      event_type: 'incident.priority_updated',
      occurred_at: '2024-03-05T09:20:00Z',
    };
    updated.data = { ...triggered.data, priority: { id: 'PP1', summary: 'P1' } };
    incident = applyIncidentEvent(incident, updated);
    expect(incident?.priority).toBe('P1');

    const resolved = resolvedEvent({}).event;
    delete resolved.data.priority;
    incident = applyIncidentEvent(incident, resolved);
    expect(incident).toMatchObject({
      status: 'resolved',
      priority: 'P1',
      resolvedAt: '2024-03-05T10:42:11.523Z',
      resolvedBy: 'Ada Lovelace',
      serviceName: 'Checkout API',
      createdAt: '2024-03-05T09:17:03Z',
    });
  });

  it('an explicit null priority clears it', () => {
    const withP1 = applyIncidentEvent(
      undefined,
      resolvedEvent({ priority: 'P1', occurredAt: '2024-03-05T10:00:00Z' }).event,
    );
    const cleared = applyIncidentEvent(withP1, resolvedEvent({ priority: null }).event);
    expect(cleared?.priority).toBeNull();
  });

  it('ignores an event older than the newest applied (late redelivery)', () => {
    const resolved = applyIncidentEvent(undefined, resolvedEvent({}).event);
    const late = fixture('pagerduty/incident-triggered.json').event;
    expect(applyIncidentEvent(resolved, late)).toBe(resolved);
  });

  it('reopening clears the resolution', () => {
    const resolved = applyIncidentEvent(undefined, resolvedEvent({}).event);
    const reopen = {
      ...resolvedEvent({}).event,
      event_type: 'incident.reopened',
      occurred_at: '2024-03-05T11:00:00Z',
    };
    reopen.data = { ...reopen.data, status: 'triggered' };
    expect(applyIncidentEvent(resolved, reopen)).toMatchObject({
      status: 'triggered',
      resolvedAt: null,
      resolvedBy: null,
    });
  });

  it('reads no incident from events without incident data', () => {
    const ping = fixture('pagerduty/pagey-ping.json').event;
    expect(incidentEventOf(ping)).toBeUndefined();
  });
});
