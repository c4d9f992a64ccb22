import type { webApi } from '@slack/bolt';
import { errorMessage } from '../errors.js';
import type { GatheredEvidence } from './pagerduty-evidence.js';
import { MAX_LINE_CHARS } from './timeline.js';

export interface SlackHistoryOptions {
  channel: string;
  /** The incident window, ISO times. */
  from: string;
  to: string;
  maxMessages?: number;
}

/**
 * What people said in the incident's channel during the incident (conversations.history, paginated):
 * people's messages only (no bots, joins or other system messages), with their names resolved. A missing
 * scope or channel is explained in `missing`, never fatal.
 */
export async function gatherSlackEvidence(
  client: webApi.WebClient,
  options: SlackHistoryOptions,
  names: Map<string, string> = new Map(),
): Promise<GatheredEvidence> {
  const max = options.maxMessages ?? 500;
  const oldest = (Date.parse(options.from) / 1000).toFixed(6);
  const latest = (Date.parse(options.to) / 1000).toFixed(6);
  const messages: { ts: string; user: string; text: string }[] = [];
  try {
    let cursor: string | undefined;
    do {
      const page = await client.conversations.history({
        channel: options.channel,
        oldest,
        latest,
        inclusive: true,
        limit: 200,
        ...(cursor ? { cursor } : {}),
      });
      for (const m of page.messages ?? []) {
        // A timeline line keeps MAX_LINE_CHARS: holding more of a long message only costs heap.
        if (m.user && !m.bot_id && !m.subtype && m.text && m.ts)
          messages.push({ ts: m.ts, user: m.user, text: m.text.slice(0, 4 * MAX_LINE_CHARS) });
      }
      cursor = page.response_metadata?.next_cursor || undefined;
    } while (cursor && messages.length < max);
  } catch (err) {
    return {
      entries: [],
      missing: [`Slack messages of the incident channel were not included: ${historyProblem(err)}`],
    };
  }
  const entries = [];
  for (const m of messages.slice(0, max)) {
    entries.push({
      at: new Date(Number(m.ts) * 1000).toISOString(),
      source: 'Slack',
      text: `${await userName(client, m.user, names)}: ${m.text}`,
    });
  }
  return { entries, missing: [] };
}

async function userName(
  client: webApi.WebClient,
  userId: string,
  names: Map<string, string>,
): Promise<string> {
  const known = names.get(userId);
  if (known) return known;
  let name = userId;
  try {
    const res = await client.users.info({ user: userId });
    name = res.user?.profile?.display_name || res.user?.real_name || res.user?.name || userId;
  } catch {
    // Without users:read the ID stands in for the name.
  }
  names.set(userId, name);
  return name;
}

function historyProblem(err: unknown): string {
  const code = (err as { data?: { error?: string; needed?: string } }).data?.error;
  switch (code) {
    case 'missing_scope':
      return 'the Slack app lacks the channels:history / groups:history scope (reinstall it from manifest.yml)';
    case 'not_in_channel':
      return 'the bot is not a member of the channel (invite it to read its history)';
    case 'channel_not_found':
      return 'the channel was not found';
    default:
      return code ?? errorMessage(err);
  }
}
