import { webApi } from '@slack/bolt';
import { AppError, RetryableError } from '../errors.js';

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

export class SlackChannelUnusableError extends AppError {
  constructor(
    readonly channel: string,
    readonly slackError: string,
  ) {
    super('slack_channel_unusable', `Slack refused channel ${channel}: ${slackError}`);
  }
}

/**
 * Sorts a Web API failure into: try again later (rate limit, Slack or network down), the channel is
 * unusable, or a permanent refusal (bad token, invalid blocks) that retrying cannot fix.
 */
export function classifySlackError(err: unknown, channel: string): Error {
  const e = err as { code?: string; retryAfter?: number; data?: { error?: string }; statusCode?: number };
  switch (e.code) {
    case webApi.ErrorCode.RateLimitedError:
      return new RetryableError('slack_rate_limited', 'Slack rate limit', (e.retryAfter ?? 1) * 1000, {
        cause: err,
      });
    case webApi.ErrorCode.RequestError:
      return new RetryableError(
        'slack_unreachable',
        `Slack API unreachable: ${(err as Error).message}`,
        undefined,
        {
          cause: err,
        },
      );
    case webApi.ErrorCode.HTTPError:
      return new RetryableError('slack_http_error', `Slack API HTTP ${e.statusCode ?? '?'}`, undefined, {
        cause: err,
      });
    case webApi.ErrorCode.PlatformError: {
      const code = e.data?.error ?? 'unknown_error';
      if (CHANNEL_UNUSABLE.has(code)) return new SlackChannelUnusableError(channel, code);
      if (SLACK_TRANSIENT.has(code))
        return new RetryableError('slack_unavailable', `Slack error ${code}`, undefined, { cause: err });
      return new AppError('slack_refused', `Slack refused the call: ${code}`, { cause: err });
    }
    default:
      return err instanceof Error ? err : new Error(String(err));
  }
}
