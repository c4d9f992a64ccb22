import type { webApi } from '@slack/bolt';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { Incident } from '../postmortems/model.js';
import type { IncidentChannelLookup } from '../postmortems/ports.js';

/**
 * INCIDENT_CHANNEL_PATTERN: a dedicated channel per incident (inc-{number}, incident-{id}), found by name.
 * Channel names are cached (conversations.list is Tier 2) and refreshed when a name is missing, at most
 * once a minute. No such channel, or no way to list channels, means the routing decides.
 */
export class IncidentChannelFinder implements IncidentChannelLookup {
  private byName = new Map<string, string>();
  private loadedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly pattern: string,
    private readonly client: webApi.WebClient,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  channelName(incident: Incident): string | undefined {
    if (this.pattern.includes('{number}') && incident.number === null) return undefined;
    return this.pattern
      .replaceAll('{number}', String(incident.number))
      .replaceAll('{id}', incident.id)
      .toLowerCase();
  }

  async find(incident: Incident): Promise<string | undefined> {
    const name = this.channelName(incident);
    if (!name) return undefined;
    const cached = this.byName.get(name);
    if (cached) return cached;
    if (this.now() - this.loadedAt < 60_000) return undefined;
    try {
      await this.load();
    } catch (err) {
      this.logger.warn(
        { err: errorMessage(err) },
        'could not list Slack channels for INCIDENT_CHANNEL_PATTERN',
      );
      return undefined;
    }
    return this.byName.get(name);
  }

  private async load(): Promise<void> {
    this.loadedAt = this.now();
    const byName = new Map<string, string>();
    let cursor: string | undefined;
    for (let page = 0; page < 50; page++) {
      const res = await this.client.conversations.list({
        types: 'public_channel,private_channel',
        exclude_archived: true,
        limit: 1000,
        ...(cursor ? { cursor } : {}),
      });
      for (const c of res.channels ?? []) if (c.name && c.id) byName.set(c.name, c.id);
      cursor = res.response_metadata?.next_cursor || undefined;
      if (!cursor) break;
    }
    this.byName = byName;
  }
}
