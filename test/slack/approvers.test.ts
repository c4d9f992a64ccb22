import { webApi } from '@slack/bolt';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logging.js';
import { isDomainError } from '../../src/postmortems/errors.js';
import { SlackApprovers } from '../../src/slack/approvers.js';
import { FakeSlack } from '../helpers/fake-slack.js';
import { LogCapture } from '../helpers/harness.js';

let slack: FakeSlack;
afterEach(async () => {
  await slack?.close();
});

async function approvers(
  ids: string[],
  workspace = { teamId: 'T0001', enterpriseId: undefined as string | undefined },
) {
  slack = await new FakeSlack().start();
  const logs = new LogCapture();
  let now = 1_000_000;
  const check = new SlackApprovers({
    ids,
    client: new webApi.WebClient(slack.token, { slackApiUrl: slack.apiUrl, retryConfig: { retries: 0 } }),
    workspace,
    logger: createLogger('debug', logs),
    now: () => now,
    ttlMs: 60_000,
    maxStaleMs: 10 * 60_000,
  });
  return { check, logs, advance: (ms: number) => (now += ms) };
}

describe('SlackApprovers', () => {
  it('lets people of the same Enterprise Grid organisation in, and no one from another', async () => {
    const { check } = await approvers([], { teamId: 'T0001', enterpriseId: 'E0001' });
    slack.users.set('UOTHERWS', { name: 'x', team_id: 'T0002', enterprise_id: 'E0001' });
    slack.users.set('UPARTNER', { name: 'y', team_id: 'T0003', enterprise_id: 'E0009' });
    expect(await check.authorize('UOTHERWS')).toEqual({ allowed: true });
    expect(await check.authorize('UPARTNER')).toEqual({ allowed: false, reason: 'outside' });
    expect(await check.authorize('UMEMBER1')).toEqual({ allowed: true });
    expect(check.describe()).toBe('everyone in the workspace');
  });

  it('refuses bots, and members who are in no approver group', async () => {
    const { check } = await approvers(['UALICE01', 'SAPPROVE']);
    slack.userGroups.set('SAPPROVE', ['UCAROL01']);
    slack.users.set('UROBOT01', { name: 'bot', is_bot: true });
    expect(await check.authorize('UROBOT01')).toEqual({ allowed: false, reason: 'bot' });
    expect(await check.authorize('UBOB0001')).toEqual({ allowed: false, reason: 'not_an_approver' });
    expect(await check.authorize('UCAROL01')).toEqual({ allowed: true });
    expect(await check.authorize('UALICE01')).toEqual({ allowed: true });
  });

  it('serves a group membership Slack cannot refresh for a bounded time only, then fails closed', async () => {
    const { check, logs, advance } = await approvers(['SAPPROVE']);
    slack.userGroups.set('SAPPROVE', ['UCAROL01']);
    expect(await check.authorize('UCAROL01')).toEqual({ allowed: true });

    slack.userGroups.set('SAPPROVE', 'internal_error');
    advance(61_000); // past the TTL: Slack is asked again, fails, the list is a minute old
    expect(await check.authorize('UCAROL01')).toEqual({ allowed: true });
    advance(10 * 60_000); // now older than TTL + the stale allowance
    const refused = await check.authorize('UCAROL01').catch((err: unknown) => err);
    expect(isDomainError(refused, 'approvers_unavailable')).toBe(true);
    expect(logs.text).toContain('approver groups could not be refreshed for too long');

    slack.userGroups.set('SAPPROVE', ['UCAROL01']);
    expect(await check.authorize('UCAROL01')).toEqual({ allowed: true });
  });

  it('cannot tell who is clicking when users.info fails, and says so instead of letting them in', async () => {
    const { check } = await approvers([]);
    slack.failNext('users.info', { kind: 'error', error: 'missing_scope' });
    const err = await check.authorize('UMEMBER1').catch((e: unknown) => e);
    expect(isDomainError(err, 'approvers_unavailable')).toBe(true);
    expect((err as Error).message).toContain('users:read');
  });
});
