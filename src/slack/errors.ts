import { webApi } from '@slack/bolt';
import { type ChatCode, DomainError } from '../postmortems/errors.js';

/** Slack answers that mean the channel cannot take our message (so the default channel should). */
const CHANNEL_UNUSABLE = new Set([
  'channel_not_found',
  'not_in_channel',
  'is_archived',
  'channel_is_archived',
]);
/** ok:false answers that are Slack's own trouble: worth retrying. */
const SLACK_TRANSIENT = new Set([
  'internal_error',
  'fatal_error',
  'service_unavailable',
  'request_timeout',
  'ratelimited',
]);

/**
 * Sorts a Web API failure into the domain's ChatCode: try again later (rate limit, Slack or network down),
 * the channel is unusable, or a permanent refusal (bad token, invalid blocks) that retrying cannot fix.
 * Anything that is not a Web API error (a bug) is returned as it is.
 */
export function classifySlackError(err: unknown, channel: string): DomainError<ChatCode> | Error {
  const e = err as { code?: string; retryAfter?: number; data?: { error?: string }; statusCode?: number };
  const chat = (code: ChatCode, message: string, retryAfterMs?: number) =>
    new DomainError(code, message, { cause: err, retryAfterMs });
  switch (e.code) {
    case webApi.ErrorCode.RateLimitedError:
      return chat('chat_rate_limited', 'Slack rate limit', (e.retryAfter ?? 1) * 1000);
    case webApi.ErrorCode.RequestError:
      return chat('chat_unavailable', `Slack API unreachable: ${(err as Error).message}`);
    case webApi.ErrorCode.HTTPError:
      return chat('chat_unavailable', `Slack API HTTP ${e.statusCode ?? '?'}`);
    case webApi.ErrorCode.PlatformError: {
      const code = e.data?.error ?? 'unknown_error';
      if (CHANNEL_UNUSABLE.has(code))
        return chat('chat_channel_unusable', `Slack refused channel ${channel}: ${code}`);
      if (SLACK_TRANSIENT.has(code)) return chat('chat_unavailable', `Slack error ${code}`);
      return chat('chat_refused', `Slack refused the call: ${code}`);
    }
    default:
      return err instanceof Error ? err : new Error(String(err));
  }
}
