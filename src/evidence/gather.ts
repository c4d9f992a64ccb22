import type { webApi } from '@slack/bolt';
import type { Logger } from 'pino';
import type { Routing } from '../config/routing.js';
import type { PagerDutyClient } from '../pagerduty/rest-client.js';
import type { Evidence, Incident, PostmortemRun } from '../postmortems/model.js';
import { routeOf } from '../postmortems/policy.js';
import type { EvidenceSource, IncidentChannelLookup } from '../postmortems/ports.js';
import { TIMELINE_BUDGET_CHARS } from '../postmortems/prompt.js';
import { type GatheredEvidence, gatherPagerDutyEvidence } from './pagerduty-evidence.js';
import { gatherSlackEvidence } from './slack-evidence.js';
import { buildTimeline } from './timeline.js';

export interface EvidenceSources {
  /** Absent without PAGERDUTY_API_TOKEN. */
  pagerduty: PagerDutyClient | undefined;
  /** Present when SLACK_INCLUDE_CHANNEL_HISTORY is on. */
  slackHistory: webApi.WebClient | undefined;
  /** INCIDENT_CHANNEL_PATTERN's lookup, when set: a channel it finds is dedicated to the incident. */
  channelFinder?: IncidentChannelLookup | undefined;
  /** Routing entries with `include_channel_history` name channels dedicated to a service's incidents. */
  routing: Routing;
  logger: Logger;
  now: () => number;
}

/**
 * The evidence for one run's prompt: PagerDuty's record of the incident and, if enabled, what was said in
 * its channel, merged into one bounded timeline. Nothing here can stop a postmortem: each missing source
 * becomes a note in the prompt.
 *
 * Channel history is read only from a channel dedicated to the incident: the one INCIDENT_CHANNEL_PATTERN
 * finds, or a routed channel whose entry says `include_channel_history`. Never the channel the run merely
 * reports in (the default channel, or wherever `/postmortem` was typed): unrelated conversations happen
 * there, and they would go to Devin.
 */
export class EvidenceGatherer implements EvidenceSource {
  private readonly names = new Map<string, string>();

  constructor(private readonly sources: EvidenceSources) {}

  async gather(run: PostmortemRun): Promise<Evidence> {
    const { pagerduty, slackHistory, logger, now } = this.sources;
    const incident = run.incident;
    const parts: GatheredEvidence[] = [];
    if (incident.source !== 'slack') {
      parts.push(
        pagerduty
          ? await gatherPagerDutyEvidence(pagerduty, incident.id)
          : { entries: [], missing: ['PagerDuty timeline not included: PAGERDUTY_API_TOKEN is not set'] },
      );
    }
    if (slackHistory && incident.createdAt) {
      const channel = await this.dedicatedChannel(incident);
      const to = incident.resolvedAt ?? new Date(now()).toISOString();
      parts.push(
        channel
          ? await gatherSlackEvidence(slackHistory, { channel, from: incident.createdAt, to }, this.names)
          : {
              entries: [],
              missing: [
                'Slack messages were not included: channel history is read only from a channel dedicated to the incident (found by INCIDENT_CHANNEL_PATTERN, or routed with include_channel_history), and this incident has none',
              ],
            },
      );
    }
    const timeline = buildTimeline(
      parts.flatMap((p) => p.entries),
      TIMELINE_BUDGET_CHARS,
    );
    const notes = parts.flatMap((p) => p.missing);
    const cut = timeline.find((l) => l.startsWith('['));
    if (cut) notes.push(`The timeline was shortened: ${cut.slice(1, -1)}`);
    if (notes.length > 0)
      logger.warn({ runId: run.id, incidentId: run.incidentId, notes }, 'evidence incomplete');
    return { timeline, notes };
  }

  private async dedicatedChannel(incident: Incident): Promise<string | undefined> {
    const found = await this.sources.channelFinder?.find(incident);
    if (found) return found;
    const route = routeOf({ routing: this.sources.routing }, incident);
    return route.includeChannelHistory ? route.channel : undefined;
  }
}
