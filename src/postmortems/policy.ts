import { type Routing, routeFor, type ServiceRoute } from '../config/routing.js';
import type { Incident } from './model.js';

export interface PostmortemPolicy {
  autoStartPriorities: readonly string[];
  /** Priorities whose sessions start on acknowledgement, to gather evidence early (empty: off). */
  earlyStartPriorities: readonly string[];
  /** Priorities that get no postmortem and no message at all. */
  neverPriorities: readonly string[];
  defaultChannel: string;
  routing: Routing;
}

export interface Decision {
  action: 'auto_start' | 'ask' | 'never';
  channel: string;
}

/**
 * What a resolved incident gets: priorities in the never set get nothing at all; priorities in the
 * auto-start set start a Devin session at once; everything else, including no priority, asks the channel
 * first. The service's own sets (routing file) replace the global ones. Labels match exactly: "P1" is not
 * "p1" and not "SEV-1"; never wins over auto-start.
 */
export function decidePostmortem(incident: Incident, policy: PostmortemPolicy): Decision {
  const route = routeOf(policy, incident);
  const never = route.neverPriorities ?? policy.neverPriorities;
  const autoStart = route.autoStartPriorities ?? policy.autoStartPriorities;
  const channel = route.channel ?? policy.defaultChannel;
  const p = incident.priority;
  const action =
    p !== null && never.includes(p) ? 'never' : p !== null && autoStart.includes(p) ? 'auto_start' : 'ask';
  return { action, channel };
}

/** Early start: an acknowledged incident whose priority is in EARLY_START_PRIORITIES (exact match). */
export function decideEarlyStart(incident: Incident, policy: PostmortemPolicy): boolean {
  return incident.priority !== null && policy.earlyStartPriorities.includes(incident.priority);
}

/** The routing entry for an incident's service; an ad-hoc incident's service is matched by name only. */
export function routeOf(policy: Pick<PostmortemPolicy, 'routing'>, incident: Incident): ServiceRoute {
  return routeFor(policy.routing, {
    id: incident.source === 'slack' ? undefined : incident.serviceId,
    name: incident.serviceName,
  });
}
