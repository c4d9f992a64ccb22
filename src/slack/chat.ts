import type { webApi } from '@slack/bolt';
import type { SlackMessage } from './messages.js';

/** The two Web API calls the postmortem lifecycle needs, so the domain does not depend on the whole client. */
export interface SlackChat {
  /** Posts a message, or a reply in a thread when `threadTs` is given. */
  post(channel: string, message: SlackMessage, threadTs?: string): Promise<{ channel: string; ts: string }>;
  update(channel: string, ts: string, message: SlackMessage): Promise<void>;
}

export function slackChat(client: webApi.WebClient): SlackChat {
  return {
    async post(channel, message, threadTs) {
      const res = await client.chat.postMessage({
        channel,
        ...(threadTs ? { thread_ts: threadTs } : {}),
        text: message.text,
        blocks: message.blocks,
        unfurl_links: false,
        unfurl_media: false,
      });
      if (!res.ts) throw new Error('chat.postMessage returned no ts');
      return { channel: res.channel ?? channel, ts: res.ts };
    },
    async update(channel, ts, message) {
      await client.chat.update({ channel, ts, text: message.text, blocks: message.blocks });
    },
  };
}
