import { type Routing, routeFor } from '../config/routing.js';
import type { Incident } from './model.js';

export interface PostmortemPolicy {
  autoStartPriorities: readonly string[];
  /** Priorities whose sessions start on acknowledgement, to gather evidence early (empty: off). */
  earlyStartPriorities: readonly string[];
  defaultChannel: string;
  routing: Routing;
}

export interface Decision {
  action: 'auto_start' | 'ask';
  channel: string;
}

/**
 * What a resolved incident gets: priorities in the auto-start set (the service's own set if the routing file
 * gives one, else the global one) start a Devin session at once; everything else, including no priority,
 * asks the channel first. Labels match exactly: "P1" is not "p1" and not "SEV-1".
 */
export function decidePostmortem(incident: Incident, policy: PostmortemPolicy): Decision {
  const route = routeFor(policy.routing, { id: incident.serviceId, name: incident.serviceName });
  const autoStart = route.autoStartPriorities ?? policy.autoStartPriorities;
  const channel = route.channel ?? policy.defaultChannel;
  const action = incident.priority !== null && autoStart.includes(incident.priority) ? 'auto_start' : 'ask';
  return { action, channel };
}

/** Early start: an acknowledged incident whose priority is in EARLY_START_PRIORITIES (exact match). */
export function decideEarlyStart(incident: Incident, policy: PostmortemPolicy): boolean {
  return incident.priority !== null && policy.earlyStartPriorities.includes(incident.priority);
}
