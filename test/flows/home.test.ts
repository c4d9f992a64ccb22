import { afterEach, describe, expect, it } from 'vitest';
import { postSignedSlackEvent } from '../../src/sandbox/stand-ins/slack-requests.js';
import {
  type Harness,
  postPagerDuty,
  postSlashCommand,
  resolvedEvent,
  SLACK_SIGNING_SECRET,
  startHarness,
  waitFor,
} from '../helpers/harness.js';

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const openHome = (harness: Harness, user: string, tab = 'home') =>
  postSignedSlackEvent(harness.url, SLACK_SIGNING_SECRET, {
    type: 'app_home_opened',
    user,
    channel: 'D0HOME0001',
    tab,
  });

const homeText = (harness: Harness, user: string) =>
  waitFor(() => {
    const view = harness.slack.homeViews.get(user);
    return view ? JSON.stringify(view.blocks) : undefined;
  }, `${user}'s Home tab`);

describe('the Home tab', () => {
  it('is published on app_home_opened: recent runs with state, who decided and links, and the configuration', async () => {
    h = await startHarness();
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P3' }));
    await waitFor(() => h.slack.callsOf('chat.postMessage').length === 1, 'the approval message');

    const res = await openHome(h, 'UALICE01');
    expect(res.status).toBe(200);
    const text = await homeText(h, 'UALICE01');
    const publish = h.slack.callsOf('views.publish')[0];
    expect(publish?.args.user_id).toBe('UALICE01');
    expect((publish?.args.view as { type?: string } | undefined)?.type).toBe('home');
    expect(text).toContain('Checkout API p99 latency above 2s');
    expect(text).toContain('#4711');
    expect(text).toContain('<#CDEFAULT01>');
    expect(text).toContain('Start by themselves: P1, P2');
    expect(text).toContain(':warning: SLACK_APPROVERS is not set');
    expect(text).not.toContain('failed for good');
  });

  it('the messages tab opening publishes nothing', async () => {
    h = await startHarness();
    expect((await openHome(h, 'UALICE01', 'messages')).status).toBe(200);
    await h.settled();
    expect(h.slack.callsOf('views.publish')).toEqual([]);
    // The same person opening the Home tab gets it.
    await openHome(h, 'UALICE01');
    await homeText(h, 'UALICE01');
  });

  it('shows every channel’s runs only to approvers', async () => {
    h = await startHarness({ env: { SLACK_APPROVERS: 'UALICE01' } });
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P3' }));
    await waitFor(() => h.slack.callsOf('chat.postMessage').length === 1, 'the approval message');
    await openHome(h, 'USAM0001');
    const sam = await homeText(h, 'USAM0001');
    expect(sam).not.toContain('Checkout API p99');
    expect(sam).toContain('shown to postmortem approvers');
    await openHome(h, 'UALICE01');
    const alice = await homeText(h, 'UALICE01');
    expect(alice).toContain('Checkout API p99');
    expect(alice).toContain('Approvers: <@UALICE01>');
  });

  it('warns in the Home tab and in /postmortem status while jobs are dead', async () => {
    h = await startHarness();
    // Slack refuses the message for good (a bad token): the job is given up and kept.
    h.slack.failNext('chat.postMessage', { kind: 'error', error: 'invalid_auth' });
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P3' }));
    await waitFor(async () => (await h.bot.store.countJobs()).dead === 1, 'the dead job');

    await openHome(h, 'UALICE01');
    expect(await homeText(h, 'UALICE01')).toContain(
      ':warning: 1 background job has failed for good and waits for an operator: `npm run jobs -- list`',
    );
    const status = await postSlashCommand(h, 'status');
    expect(status.status).toBe(200);
    const reply = await waitFor(() => h.slack.responses.at(-1), 'the status reply');
    expect(String(reply.body.text)).toContain('1 background job has failed for good');
  });
});
