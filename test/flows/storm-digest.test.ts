import { afterEach, describe, expect, it } from 'vitest';
import type { PostmortemRun } from '../../src/postmortems/model.js';
import {
  DIGEST_APPROVE_ALL_ACTION_ID,
  DIGEST_REVIEW_ACTION_ID,
  DIGEST_SKIP_ALL_ACTION_ID,
} from '../../src/slack/digest.js';
import type { PostedMessage } from '../helpers/fake-slack.js';
import {
  buttonClick,
  contextText,
  fixture,
  type Harness,
  postPagerDuty,
  postSlackInteraction,
  resolvedEvent,
  startHarness,
  waitFor,
} from '../helpers/harness.js';
import { stormEvent, stormIncidentId } from '../helpers/storm.js';

/**
 * The per-channel bound on top-level posts in a storm (digest.ts): once SLACK_DIGEST_AFTER of the bot's
 * run messages are open in a channel, approval requests fold into the digest and runs started by policy
 * post their message in the digest's thread. Their sessions start all the same. Driven over HTTP, with
 * Slack, Devin and PagerDuty stood in at their HTTP boundary.
 */

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const CHANNEL = 'CDEFAULT01';
const ENV = { SLACK_APPROVERS: 'UALICE01', SLACK_DIGEST_AFTER: '5', STORM_WINDOW: '10m' };

/** Two P1 incidents (one storm group, auto-started) on each of `services` services, numbered from `from`. */
async function p1Groups(services: number, from = 0): Promise<void> {
  const events = Array.from({ length: services }, (_, s) =>
    [0, 1].map((k) => {
      const n = from + s * 2 + k;
      h.pagerduty.addIncident({ id: stormIncidentId(n), incident_number: 9000 + n });
      return stormEvent(n, {
        serviceId: `PP1SVC${s}`,
        serviceName: `Payments ${s}`,
        title: `Payments ${s} down on host ${k}`,
      });
    }),
  ).flat();
  const statuses = await Promise.all(events.map(async (e) => (await postPagerDuty(h.url, e)).status));
  expect(statuses).toEqual(Array(events.length).fill(202));
}

/** `n` P3 incidents (approval first) of `n` other services. */
async function requests(n: number): Promise<void> {
  const statuses = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const r = await postPagerDuty(
        h.url,
        resolvedEvent({
          eventId: `EVT-REQ-${i}`,
          incidentId: `QREQ${String(i).padStart(4, '0')}`,
          number: 5000 + i,
          priority: 'P3',
          title: `Service ${i} errors`,
          serviceId: `PREQ${String(i).padStart(4, '0')}`,
          serviceName: `Service ${i}`,
        }),
      );
      return r.status;
    }),
  );
  expect(statuses).toEqual(Array(n).fill(202));
}

/** Top-level posts in the channel (thread replies keep it readable). */
const channelPosts = () =>
  h.slack.callsOf('chat.postMessage').filter((c) => c.args.channel === CHANNEL && !c.args.thread_ts);

const messages = () => [...h.slack.messages.values()];
const digestMessages = (): PostedMessage[] =>
  messages().filter(
    (m) =>
      JSON.stringify(m.blocks).includes(DIGEST_REVIEW_ACTION_ID) ||
      /nothing waits|started automatically/.test(m.text),
  );
const digestMessage = (): PostedMessage => {
  const all = digestMessages();
  expect(all).toHaveLength(1);
  return all[0] as PostedMessage;
};
const runs = async (): Promise<PostmortemRun[]> => h.bot.store.recentRuns(1000);
const autoRuns = async () => (await runs()).filter((r) => r.trigger === 'auto');

describe('a storm bounds the top-level posts of a channel: requests and runs started by policy alike', () => {
  it('five P1 groups auto-started, then 30 requests: six posts, five sessions, the 30 requests in the digest, Skip all decides each once', async () => {
    h = await startHarness({ env: ENV });
    await p1Groups(5);
    await h.settled(60_000);
    expect(h.devin.createRequests).toHaveLength(5);
    // Five run messages of their own: the channel's five.
    expect(channelPosts()).toHaveLength(5);

    await requests(30);
    await h.settled(60_000);
    const posts = channelPosts();
    expect(posts.length).toBeLessThanOrEqual(6);
    expect(posts).toHaveLength(6);
    // No request got a card of its own: five run messages are open, so all 30 went to the digest.
    expect(messages().filter((m) => JSON.stringify(m.blocks).includes('postmortem_approve'))).toHaveLength(0);
    const digest = digestMessage();
    expect(digest.channel).toBe(CHANNEL);
    expect(digest.threadTs).toBeUndefined();
    const text = JSON.stringify(digest.blocks);
    expect(text).toContain('30 incidents wait for a postmortem decision in this channel');
    expect(text).toContain('30 requests are shown only here');
    // The five started runs have messages of their own: the digest does not list them.
    expect(text).not.toContain('Started automatically');
    expect(h.devin.createRequests).toHaveLength(5);

    // As shown when clicked: a second click (Slack sends the old message's button) finds nothing left.
    const shown = { ...digest, blocks: structuredClone(digest.blocks) };
    await postSlackInteraction(h.url, buttonClick(h.slack, shown, DIGEST_SKIP_ALL_ACTION_ID, 'UALICE01'));
    await h.settled(60_000);
    expect(String(h.slack.responses.at(-1)?.body.text)).toBe('Skipped 30 requests.');
    const all = await runs();
    expect(all.filter((r) => r.trigger === 'approval').every((r) => r.state === 'skipped')).toBe(true);
    expect(all.filter((r) => r.state === 'skipped')).toHaveLength(30);
    expect((await autoRuns()).map((r) => r.state)).toEqual(Array(5).fill('started'));
    await postSlackInteraction(h.url, buttonClick(h.slack, shown, DIGEST_SKIP_ALL_ACTION_ID, 'UALICE01'));
    await h.settled();
    expect(String(h.slack.responses.at(-1)?.body.text)).toBe('Nothing to skip.');
    expect(channelPosts()).toHaveLength(6);
    expect(h.devin.createRequests).toHaveLength(5);
  }, 120_000);

  it("five requests, then five P1 groups: every session starts, their messages go in the digest's thread, which lists them, and a finished run replies there", async () => {
    h = await startHarness({ env: ENV });
    await requests(5);
    await h.settled(60_000);
    expect(channelPosts()).toHaveLength(5);

    await p1Groups(5);
    await h.settled(60_000);
    // Every session started, whatever Slack showed.
    expect(h.devin.createRequests).toHaveLength(5);
    const started = await autoRuns();
    expect(started).toHaveLength(5);
    expect(started.every((r) => r.state === 'started')).toBe(true);
    // One digest posted for them: the sixth and last top-level post.
    const posts = channelPosts();
    expect(posts).toHaveLength(6);
    const digest = digestMessage();
    // Posted for the first folds (as many as had folded by then), and updated in place as the rest came.
    expect(String(posts.at(-1)?.args.text)).toMatch(
      /^[1-5] postmortems? started automatically in this storm$/,
    );
    expect(digestMessage().text).toBe('5 postmortems started automatically in this storm');
    // Each run's message, once, in the digest's thread, showing its group and its session.
    const inThread = h.slack.callsOf('chat.postMessage').filter((c) => c.args.thread_ts === digest.ts);
    expect(inThread).toHaveLength(5);
    for (const run of started) {
      const own = h.slack.messages.get(run.slackTs as string) as PostedMessage;
      expect(own.threadTs).toBe(digest.ts);
      expect(contextText(own)).toContain('Devin is working on the postmortem');
    }
    const text = JSON.stringify(digest.blocks);
    expect(text).toContain('Started automatically: 5');
    for (const run of started) expect(text).toContain(`|#${run.incident.number}>`);
    expect(text).toContain('5 requests still wait in their own messages');

    // A run folded there that finishes with a PR replies in the digest's thread, not under its message.
    const one = started[0] as PostmortemRun;
    h.devin.update(one.devinSessionId as string, {
      status: 'running',
      status_detail: 'finished',
      pull_requests: [{ pr_url: 'https://github.com/acme/postmortems/pull/9', pr_state: 'open' }],
    });
    await h.bot.follower.tick();
    await h.settled(60_000);
    const finished = h.slack
      .callsOf('chat.postMessage')
      .filter((c) => String(c.args.text) === 'The postmortem is ready');
    expect(finished.map((c) => c.args.thread_ts)).toEqual([digest.ts]);
    expect(channelPosts()).toHaveLength(6);
    expect(await h.bot.store.countJobs()).toMatchObject({ queued: 0, dead: 0 });
  }, 120_000);

  it('the sessions of folded runs start while Slack is down; once it is back, the digest and their messages are posted once each', async () => {
    h = await startHarness({ env: ENV });
    await requests(5);
    await h.settled(60_000);
    h.slack.unavailableUntil = Number.MAX_SAFE_INTEGER;
    await p1Groups(5);
    // Every session starts with no digest and no run message posted.
    await waitFor(() => h.devin.createRequests.length === 5, 'five sessions created', 30_000);
    const runs5 = await autoRuns();
    expect(runs5.every((r) => r.slackTs === null)).toBe(true);
    expect(channelPosts()).toHaveLength(5);

    h.slack.unavailableUntil = 0;
    await h.settled(60_000);
    expect(channelPosts()).toHaveLength(6);
    const digest = digestMessage();
    const inThread = h.slack.callsOf('chat.postMessage').filter((c) => c.args.thread_ts === digest.ts);
    expect(inThread).toHaveLength(5);
    const started = await autoRuns();
    expect(started.every((r) => r.state === 'started')).toBe(true);
    expect(new Set(started.map((r) => r.slackTs)).size).toBe(5);
    expect(await h.bot.store.countJobs()).toMatchObject({ queued: 0, dead: 0 });
  }, 120_000);

  it('P1 groups alone: five messages of their own, then one digest whose thread takes the rest', async () => {
    h = await startHarness({ env: ENV });
    await p1Groups(12);
    await h.settled(60_000);
    expect(h.devin.createRequests).toHaveLength(12);
    expect(channelPosts()).toHaveLength(6);
    const digest = digestMessage();
    expect(JSON.stringify(digest.blocks)).toContain('Started automatically: 7');
    expect(h.slack.callsOf('chat.postMessage').filter((c) => c.args.thread_ts === digest.ts)).toHaveLength(7);
    // Each run's message posted exactly once.
    const auto = await autoRuns();
    expect(new Set(auto.map((r) => r.slackTs)).size).toBe(12);
    expect(auto.every((r) => r.slackTs !== null)).toBe(true);
  }, 120_000);

  it("a later storm's new digest does not claim the runs in an older digest's thread", async () => {
    h = await startHarness({ env: ENV });
    await p1Groups(12);
    await h.settled(60_000);
    const first = digestMessage();
    // Past the storm window: the first storm's messages no longer count. Six requests: five cards and a
    // new digest at the bottom of the channel, which lists the sixth and no started run.
    h.clock.advance(11 * 60_000);
    await requests(6);
    await h.settled(60_000);
    const digests = digestMessages();
    expect(digests).toHaveLength(2);
    const second = digests.find((m) => m.ts !== first.ts) as PostedMessage;
    expect(JSON.stringify(second.blocks)).toContain(DIGEST_REVIEW_ACTION_ID);
    expect(JSON.stringify(second.blocks)).not.toContain('Started automatically');
    expect(channelPosts()).toHaveLength(6 + 6);
  }, 120_000);
});

describe("runs that policy would start but the day's budget holds for approval", () => {
  it('fold into the digest like any request beyond the bound: six posts for 12 P1 groups, and Approve all starts them', async () => {
    h = await startHarness({ env: { ...ENV, DEVIN_DAILY_SESSION_LIMIT: '0' } });
    await p1Groups(12);
    await h.settled(60_000);
    expect(h.devin.createRequests).toHaveLength(0);
    const held = await autoRuns();
    expect(held).toHaveLength(12);
    expect(held.every((r) => r.state === 'awaiting_approval' && r.budgetHold !== null)).toBe(true);
    // Five cards of their own (each says why it asks), and one digest for the other seven.
    expect(channelPosts()).toHaveLength(6);
    const digest = digestMessage();
    const text = JSON.stringify(digest.blocks);
    expect(text).toContain(
      '24 incidents (in 12 requests: a storm group is one) wait for a postmortem decision',
    );
    expect(text).toContain('7 requests are shown only here');
    // It says they are over the budget, each listed one too, and Approve all asks before it overrides it.
    expect(text).toContain(
      '12 of these are held by today’s Devin budget: approving them overrides the budget.',
    );
    expect(text).toContain('· _held by today’s budget_');
    const approveAll = (digest.blocks as any[])
      .flatMap((b) => b.elements ?? [])
      .find((e) => e.action_id === DIGEST_APPROVE_ALL_ACTION_ID);
    expect(approveAll.confirm.text.text).toBe(
      '12 of these are held by today’s Devin budget. Approving all starts 12 sessions, over the budget.',
    );

    // Approving from the digest is the override: each starts once; the folded ones report in its thread.
    await postSlackInteraction(h.url, buttonClick(h.slack, digest, DIGEST_APPROVE_ALL_ACTION_ID, 'UALICE01'));
    await h.settled(60_000);
    expect(h.devin.createRequests).toHaveLength(12);
    const started = await autoRuns();
    expect(started.every((r) => r.state === 'started' && r.budgetOverrideBy === 'UALICE01')).toBe(true);
    expect(h.slack.callsOf('chat.postMessage').filter((c) => c.args.thread_ts === digest.ts)).toHaveLength(7);
    expect(channelPosts()).toHaveLength(6);
    expect(await h.bot.store.countJobs()).toMatchObject({ queued: 0, dead: 0 });
  }, 120_000);
});

describe('early starts in a storm (EARLY_START_PRIORITIES)', () => {
  it('are runs started by policy: five messages of their own, the rest in the digest thread, every session started', async () => {
    h = await startHarness({ env: { ...ENV, EARLY_START_PRIORITIES: 'P1' } });
    const statuses = await Promise.all(
      Array.from({ length: 9 }, async (_, n) => {
        const body = fixture('pagerduty/incident-triggered.json');
        body.event.id = `EVT-ACK-${n}`;
        body.event.event_type = 'incident.acknowledged';
        body.event.data.status = 'acknowledged';
        body.event.data.id = `QACK${n}`;
        body.event.data.number = 6000 + n;
        body.event.data.html_url = `https://acme.pagerduty.com/incidents/QACK${n}`;
        body.event.data.priority = { id: 'PPRI1', summary: 'P1' };
        body.event.data.service = { ...body.event.data.service, id: `PACKSVC${n}`, summary: `Search ${n}` };
        return (await postPagerDuty(h.url, body)).status;
      }),
    );
    expect(statuses).toEqual(Array(9).fill(202));
    await h.settled(60_000);
    expect(h.devin.createRequests).toHaveLength(9);
    const early = (await runs()).filter((r) => r.trigger === 'early');
    expect(early).toHaveLength(9);
    expect(channelPosts()).toHaveLength(6);
    const digest = digestMessage();
    expect(JSON.stringify(digest.blocks)).toContain('Started automatically: 4');
    expect(h.slack.callsOf('chat.postMessage').filter((c) => c.args.thread_ts === digest.ts)).toHaveLength(4);
    expect(new Set(early.map((r) => r.slackTs)).size).toBe(9);
  }, 120_000);
});

describe('SLACK_DIGEST_AFTER=0 in a storm', () => {
  it('every run started by policy posts its own message, as before', async () => {
    h = await startHarness({ env: { ...ENV, SLACK_DIGEST_AFTER: '0' } });
    await p1Groups(7);
    await h.settled(60_000);
    expect(h.devin.createRequests).toHaveLength(7);
    expect(channelPosts()).toHaveLength(7);
    expect(digestMessages()).toHaveLength(0);
  }, 120_000);
});
