import type { webApi } from '@slack/bolt';
import type { Logger } from 'pino';
import type { PagerDutyClient } from '../pagerduty/rest-client.js';
import type { Evidence, PostmortemRun } from '../postmortems/model.js';
import type { EvidenceSource } from '../postmortems/ports.js';
import { TIMELINE_BUDGET_CHARS } from '../postmortems/prompt.js';
import { type GatheredEvidence, gatherPagerDutyEvidence } from './pagerduty-evidence.js';
import { gatherSlackEvidence } from './slack-evidence.js';
import { buildTimeline } from './timeline.js';

export interface EvidenceSources {
  /** Absent without PAGERDUTY_API_TOKEN. */
  pagerduty: PagerDutyClient | undefined;
  /** Present when SLACK_INCLUDE_CHANNEL_HISTORY is on. */
  slackHistory: webApi.WebClient | undefined;
  logger: Logger;
  now: () => number;
}

/**
 * The evidence for one run's prompt: PagerDuty's record of the incident and, if enabled, what was said in
 * its channel, merged into one bounded timeline. Nothing here can stop a postmortem: each missing source
 * becomes a note in the prompt.
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
      const to = incident.resolvedAt ?? new Date(now()).toISOString();
      parts.push(
        await gatherSlackEvidence(
          slackHistory,
          { channel: run.channel, from: incident.createdAt, to },
          this.names,
        ),
      );
    }
    const timeline = buildTimeline(
      parts.flatMap((p) => p.entries),
      TIMELINE_BUDGET_CHARS,
    );
    const notes = parts.flatMap((p) => p.missing);
    const cut = timeline.find((l) => l.startsWith('['));
    if (cut) notes.push(`The timeline was shortened: ${cut.slice(1, -1)}`);
    if (notes.length > 0) logger.warn({ runId: run.id, notes }, 'evidence incomplete');
    return { timeline, notes };
  }
}
