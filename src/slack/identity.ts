import { webApi } from '@slack/bolt';
import { AppError } from '../errors.js';
import { describeNetworkFailure } from '../network-errors.js';

/** Who the bot is in Slack (from auth.test at start-up), so Bolt never calls auth.test itself. */
export interface BotIdentity {
  botId: string;
  botUserId: string;
  /** The workspace the app is installed in, and its Enterprise Grid organisation if any. */
  teamId: string;
  enterpriseId: string | undefined;
}

/**
 * Asks Slack who the bot token belongs to, once, at start-up: a bad token stops the bot with a clear
 * message instead of failing every later call. Network trouble is retried a few times, not for 30 minutes.
 */
export async function resolveBotIdentity(
  token: string,
  slackApiUrl: string | undefined,
): Promise<BotIdentity> {
  const client = new webApi.WebClient(token, {
    ...(slackApiUrl ? { slackApiUrl } : {}),
    retryConfig: { retries: 3, factor: 2, minTimeout: 1000, maxTimeout: 5000 },
    timeout: 10_000,
  });
  try {
    const res = await client.auth.test();
    if (!res.bot_id || !res.user_id || !res.team_id) {
      throw new AppError(
        'slack_not_bot_token',
        'SLACK_BOT_TOKEN is not a bot token (auth.test returned no bot_id)',
      );
    }
    return {
      botId: res.bot_id,
      botUserId: res.user_id,
      teamId: res.team_id,
      enterpriseId: res.enterprise_id || undefined,
    };
  } catch (err) {
    if (err instanceof AppError) throw err;
    const code = (err as { data?: { error?: string } }).data?.error;
    if (
      code === 'invalid_auth' ||
      code === 'not_authed' ||
      code === 'account_inactive' ||
      code === 'token_revoked'
    ) {
      throw new AppError(
        'slack_token_rejected',
        `SLACK_BOT_TOKEN was rejected by Slack (${code}): reinstall the app and copy its Bot User OAuth Token`,
      );
    }
    if (code) {
      throw new AppError('slack_refused', `Slack refused auth.test for SLACK_BOT_TOKEN (${code})`);
    }
    const url = `${slackApiUrl ?? 'https://slack.com/api/'}auth.test`;
    throw new AppError(
      'slack_unreachable',
      `Could not reach Slack to check SLACK_BOT_TOKEN: ${describeNetworkFailure(err, url, 10_000).text}`,
    );
  }
}
