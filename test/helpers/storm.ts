import { resolvedEvent } from './harness.js';

/** The storm flow tests' incidents: incident n of a storm resolved n seconds after 14:00. */
export const STORM_BASE = Date.parse('2024-03-05T14:00:00.000Z');

export const stormIncidentId = (n: number) => `PSTORM${String(n).padStart(3, '0')}`;

/** Incident n of a storm: resolved n seconds after 14:00, a P1 on the fixture's service unless told. */
export function stormEvent(
  n: number,
  overrides: { priority?: string | null; serviceId?: string; serviceName?: string; title?: string } = {},
) {
  return resolvedEvent({
    eventId: `storm-resolve-${n}`,
    incidentId: stormIncidentId(n),
    number: 9000 + n,
    priority: overrides.priority === undefined ? 'P1' : overrides.priority,
    title: overrides.title ?? `Checkout API 5xx on host ${n}`,
    occurredAt: new Date(STORM_BASE + n * 1000).toISOString(),
    ...(overrides.serviceId ? { serviceId: overrides.serviceId } : {}),
    ...(overrides.serviceName ? { serviceName: overrides.serviceName } : {}),
  });
}
