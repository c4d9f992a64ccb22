import { webApi } from '@slack/bolt';
import type { Config } from '../config/config.js';
import { describeNetworkFailure } from '../network-errors.js';
import { type CheckResult, failed, ok, unreachable } from './check.js';

/** The bot scopes manifest.yml asks for that this configuration uses (test/docs.test.ts keeps them in step). */
export function requiredScopes(config: Config): string[] {
  const scopes = [
    'chat:write',
    'chat:write.public',
    'commands',
    'channels:read',
    'groups:read',
    'users:read',
  ];
  if (config.slack.approvers.some((id) => id.startsWith('S'))) scopes.push('usergroups:read');
  if (config.evidence.includeChannelHistory) scopes.push('channels:history', 'groups:history');
  return scopes;
}

const REINSTALL =
  'add them under OAuth & Permissions → Bot Token Scopes (or paste manifest.yml again), then reinstall the app to the workspace';

type Client = InstanceType<typeof webApi.WebClient>;

const slackError = (err: unknown): string | undefined => (err as { data?: { error?: string } }).data?.error;

/**
 * The Slack side, read-only: the token and its scopes against the manifest, the default and routed
 * channels (they exist, are not archived, the bot may post there), and the approvers (users exist,
 * user groups resolve). No message is posted.
 */
export async function checkSlack(config: Config): Promise<CheckResult[]> {
  const apiUrl = config.slack.apiUrl ?? 'https://slack.com/api/';
  const client: Client = new webApi.WebClient(config.slack.botToken, {
    slackApiUrl: apiUrl,
    retryConfig: { retries: 1, minTimeout: 500, maxTimeout: 1000 },
    timeout: 10_000,
  });
  const results: CheckResult[] = [];
  const tokenCheck = 'Slack bot token';
  let scopes: string[] | undefined;
  try {
    const res = await client.auth.test();
    if (!res.bot_id) {
      return [
        failed(
          tokenCheck,
          'SLACK_BOT_TOKEN',
          'the token is not a bot token (auth.test names no bot)',
          'copy the Bot User OAuth Token (xoxb-…) from OAuth & Permissions',
        ),
      ];
    }
    results.push(
      ok(
        tokenCheck,
        `bot ${res.user ?? res.user_id} (${res.bot_id}) in workspace ${res.team ?? res.team_id}`,
      ),
    );
    scopes = res.response_metadata?.scopes;
  } catch (err) {
    const code = slackError(err);
    if (code) {
      return [
        failed(
          tokenCheck,
          'SLACK_BOT_TOKEN',
          `Slack rejected the token (${code})`,
          'reinstall the app and copy its Bot User OAuth Token (xoxb-…)',
        ),
      ];
    }
    return [
      unreachable(
        tokenCheck,
        `cannot reach Slack: ${describeNetworkFailure(err, `${apiUrl}auth.test`, 10_000).text}`,
        'check the network path to Slack (DNS, firewall, HTTPS_PROXY) and SLACK_API_URL',
      ),
    ];
  }

  const scopeCheck = 'Slack scopes';
  const needed = requiredScopes(config);
  if (!scopes) {
    results.push(
      unreachable(
        scopeCheck,
        'Slack did not say which scopes the token has (no X-OAuth-Scopes header)',
        'compare OAuth & Permissions → Bot Token Scopes with manifest.yml by hand',
      ),
    );
  } else {
    const missing = needed.filter((s) => !scopes.includes(s));
    results.push(
      missing.length === 0
        ? ok(scopeCheck, `the token has every scope this configuration uses (${needed.join(', ')})`)
        : failed(scopeCheck, 'SLACK_BOT_TOKEN', `the token lacks ${missing.join(', ')}`, REINSTALL),
    );
  }

  const channels = new Map<string, string>([[config.policy.defaultChannel, 'SLACK_DEFAULT_CHANNEL']]);
  for (const [service, route] of Object.entries(config.policy.routing.services)) {
    if (route.channel && !channels.has(route.channel))
      channels.set(route.channel, `ROUTING_FILE (service ${service})`);
  }
  for (const [channel, variable] of channels) {
    results.push(
      await checkChannel(client, channel, variable, scopes?.includes('chat:write.public') ?? true),
    );
  }
  for (const id of config.slack.approvers) results.push(await checkApprover(client, id));
  return results;
}

async function checkChannel(
  client: Client,
  channel: string,
  variable: string,
  publicPosting: boolean,
): Promise<CheckResult> {
  const check = `Slack channel ${channel}`;
  try {
    const res = await client.conversations.info({ channel });
    const c = res.channel ?? {};
    const name = c.name ? `#${c.name}` : channel;
    if (c.is_archived) {
      return failed(check, variable, `${name} is archived`, 'unarchive it or name another channel');
    }
    if (c.is_private && !c.is_member) {
      return failed(
        check,
        variable,
        `${name} is private and the bot is not in it`,
        'invite the bot there (/invite @postmortem-bot)',
      );
    }
    if (!c.is_private && !c.is_member && !publicPosting) {
      return failed(
        check,
        variable,
        `the bot is not in ${name} and lacks chat:write.public`,
        'invite the bot there, or add chat:write.public and reinstall',
      );
    }
    return ok(
      check,
      `${name} exists and the bot may post there${c.is_member ? '' : ' (public, without joining)'}`,
    );
  } catch (err) {
    const code = slackError(err);
    if (code === 'channel_not_found') {
      return failed(
        check,
        variable,
        `no channel ${channel} the bot can see`,
        'use the channel ID (C…, from View channel details), and invite the bot if the channel is private',
      );
    }
    if (code)
      return failed(check, 'SLACK_BOT_TOKEN', `Slack refused conversations.info (${code})`, REINSTALL);
    return unreachable(
      check,
      `cannot reach Slack: ${(err as Error).message}`,
      'check the network path to Slack',
    );
  }
}

async function checkApprover(client: Client, id: string): Promise<CheckResult> {
  const check = `Approver ${id}`;
  try {
    if (id.startsWith('S')) {
      const res = await client.usergroups.users.list({ usergroup: id });
      return ok(check, `user group with ${res.users?.length ?? 0} members`);
    }
    const res = await client.users.info({ user: id });
    return ok(check, `user ${res.user?.name ?? id}`);
  } catch (err) {
    const code = slackError(err);
    if (code === 'paid_teams_only') {
      return failed(
        check,
        'SLACK_APPROVERS',
        'user groups need a paid Slack plan (paid_teams_only)',
        'list the approvers by user ID (U…) instead',
      );
    }
    if (code === 'missing_scope') {
      return failed(
        check,
        'SLACK_BOT_TOKEN',
        `Slack refused to read ${id} (missing_scope)`,
        `add ${id.startsWith('S') ? 'usergroups:read' : 'users:read'}, then ${REINSTALL.split(', then ')[1] ?? 'reinstall the app'}`,
      );
    }
    if (code) {
      return failed(
        check,
        'SLACK_APPROVERS',
        `Slack does not know ${id} (${code})`,
        'use a user ID (U…, from a profile’s ⋮ → Copy member ID) or a user-group ID (S…)',
      );
    }
    return unreachable(
      check,
      `cannot reach Slack: ${(err as Error).message}`,
      'check the network path to Slack',
    );
  }
}
