import { afterEach, describe, expect, it } from 'vitest';
import type { PostmortemRun } from '../../src/postmortems/model.js';
import { viewBlockActionsPayload } from '../../src/sandbox/stand-ins/slack-requests.js';
import {
  DIGEST_APPROVE_ALL_ACTION_ID,
  DIGEST_REVIEW_ACTION_ID,
  DIGEST_SKIP_ALL_ACTION_ID,
  REVIEW_APPROVE_ACTION_ID,
  REVIEW_PAGE_ACTION_ID,
  REVIEW_PICK_ACTION_ID,
  REVIEW_PICK_BLOCK_ID,
  REVIEW_SKIP_ACTION_ID,
} from '../../src/slack/digest.js';
import type { PostedMessage } from '../helpers/fake-slack.js';
import {
  buttonClick,
  contextText,
  type Harness,
  postPagerDuty,
  postSlackInteraction,
  resolvedEvent,
  startHarness,
  waitFor,
} from '../helpers/harness.js';

/**
 * SLACK_DIGEST_AFTER at the HTTP boundary: a storm of approval requests in one channel keeps the channel
 * readable (a few cards, then one digest updated in place), and the digest's bulk decisions decide each
 * request exactly once, for approvers only.
 */

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const CHANNEL = 'CDEFAULT01';
const APPROVERS = { SLACK_APPROVERS: 'UALICE01,UBOB0001', SLACK_DIGEST_AFTER: '5' };

/** `n` P3 incidents (approval first) of `n` different services, resolved at once. */
async function storm(n: number): Promise<void> {
  const responses = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      postPagerDuty(
        h.url,
        resolvedEvent({
          eventId: `EVT-STORM-${i}`,
          incidentId: `QSTORM${String(i).padStart(4, '0')}`,
          number: 5000 + i,
          priority: 'P3',
          title: `Service ${i} <!channel> & errors`,
          serviceId: `PSVC${String(i).padStart(4, '0')}`,
          serviceName: `Service ${i}`,
        }),
      ),
    ),
  );
  expect(responses.map((r) => r.status)).toEqual(Array(n).fill(202));
}

/** Top-level posts in the channel (thread replies keep the channel readable, so they are counted apart). */
const channelPosts = () =>
  h.slack.callsOf('chat.postMessage').filter((c) => c.args.channel === CHANNEL && !c.args.thread_ts);

const hasAction = (m: { blocks: unknown[] }, actionId: string) =>
  JSON.stringify(m.blocks).includes(`"action_id":"${actionId}"`);

const digestMessage = (): PostedMessage =>
  [...h.slack.messages.values()].find(
    (m) => hasAction(m, DIGEST_REVIEW_ACTION_ID) || m.text.includes('nothing waits'),
  ) as PostedMessage;

const allRuns = async (): Promise<PostmortemRun[]> => h.bot.store.recentRuns(1000);
const states = async () => {
  const counts: Record<string, number> = {};
  for (const r of await allRuns()) counts[r.state] = (counts[r.state] ?? 0) + 1;
  return counts;
};
const lastResponse = () => String(h.slack.responses.at(-1)?.body.text);

describe('SLACK_DIGEST_AFTER: a storm of approval requests in one channel', () => {
  it('posts five cards and one digest for 30 requests; Skip all decides every one once, for approvers only', async () => {
    h = await startHarness({ env: APPROVERS });
    await storm(30);
    await h.settled(60_000);

    const posts = channelPosts();
    expect(posts.length).toBeLessThanOrEqual(8);
    // The first five requests by arrival got cards; the 25 others folded into one digest.
    const cards = [...h.slack.messages.values()].filter((m) => hasAction(m, 'postmortem_approve'));
    expect(cards).toHaveLength(5);
    expect(posts).toHaveLength(6);
    const digest = digestMessage();
    expect(digest.channel).toBe(CHANNEL);
    const text = JSON.stringify(digest.blocks);
    expect(text).toContain('30 incidents wait for a postmortem decision in this channel');
    expect(text).toContain('Approve all 30');
    // Listed with links, escaped: the title's <!channel> cannot ping anyone.
    expect(text).toContain('<https://acme.pagerduty.com/incidents/QSTORM0029|#5029>');
    expect(text).toContain('Service 29 &lt;!channel&gt; &amp; errors');
    expect(text).not.toContain('<!channel>');
    expect(text).toContain('…and 20 older requests');
    expect(await states()).toEqual({ awaiting_approval: 30 });

    // Someone who may not decide: told privately, nothing changes.
    await postSlackInteraction(h.url, buttonClick(h.slack, digest, DIGEST_SKIP_ALL_ACTION_ID, 'UCAROL01'));
    await postSlackInteraction(h.url, buttonClick(h.slack, digest, DIGEST_APPROVE_ALL_ACTION_ID, 'UCAROL01'));
    await h.settled();
    expect(h.slack.responses.map((r) => r.body.text)).toEqual([
      'Only postmortem approvers can do this (<@UALICE01>, <@UBOB0001>). Nothing was changed; ask one of them.',
      'Only postmortem approvers can do this (<@UALICE01>, <@UBOB0001>). Nothing was changed; ask one of them.',
    ]);
    expect(await states()).toEqual({ awaiting_approval: 30 });

    const shown = { ...digest, blocks: structuredClone(digest.blocks) };
    await postSlackInteraction(h.url, buttonClick(h.slack, shown, DIGEST_SKIP_ALL_ACTION_ID, 'UALICE01'));
    await h.settled(60_000);
    expect(lastResponse()).toBe('Skipped 30 requests.');
    const runs = await allRuns();
    expect(runs.every((r) => r.state === 'skipped' && r.decidedBy === 'UALICE01')).toBe(true);
    // Skipping posts nothing new: the five cards are updated, the digest says nothing waits.
    expect(channelPosts()).toHaveLength(6);
    expect(JSON.stringify(digestMessage().blocks)).toContain('nothing waits here any more');
    for (const card of cards)
      expect(JSON.stringify(card.blocks)).toContain('Postmortem skipped by <@UALICE01>');

    // A second click (the old digest's button, as Slack would send it) finds nothing left to decide.
    await postSlackInteraction(h.url, buttonClick(h.slack, shown, DIGEST_SKIP_ALL_ACTION_ID, 'UBOB0001'));
    await h.settled();
    expect(lastResponse()).toBe('Nothing to skip.');
    expect(h.devin.createRequests).toHaveLength(0);
  }, 120_000);

  it('Approve all, clicked twice by two people at once, starts exactly one session per request', async () => {
    h = await startHarness({ env: APPROVERS });
    await storm(30);
    await h.settled(60_000);
    const digest = digestMessage();
    await Promise.all([
      postSlackInteraction(h.url, buttonClick(h.slack, digest, DIGEST_APPROVE_ALL_ACTION_ID, 'UALICE01')),
      postSlackInteraction(h.url, buttonClick(h.slack, digest, DIGEST_APPROVE_ALL_ACTION_ID, 'UBOB0001')),
    ]);
    await h.settled(90_000);

    const runs = await allRuns();
    expect(runs).toHaveLength(30);
    expect(runs.every((r) => r.state === 'started')).toBe(true);
    // One session each, and no run decided twice (the two replies add up to 30).
    expect(h.devin.createRequests).toHaveLength(30);
    const tags = h.devin.createRequests.map((r) => (r.tags as string[]).find((t) => t.startsWith('pm-run-')));
    expect(new Set(tags).size).toBe(30);
    const decided = h.slack.responses.map((r) => {
      const m = /^(?:Approved (\d+) requests?|Nothing to approve)/.exec(String(r.body.text));
      return Number(m?.[1] ?? 0);
    });
    expect(decided.reduce((a, b) => a + b, 0)).toBe(30);
    // The channel stays readable: the five cards are updated in place, and the 25 requests approved from
    // the digest post their run's message (with Stop, then the session link) in the digest's thread.
    expect(channelPosts()).toHaveLength(6);
    const inThread = h.slack.callsOf('chat.postMessage').filter((c) => c.args.thread_ts === digest.ts);
    expect(inThread).toHaveLength(25);
    const threaded = runs.filter((r) =>
      [...h.slack.messages.values()].some((m) => m.ts === r.slackTs && m.threadTs === digest.ts),
    );
    expect(threaded).toHaveLength(25);
    for (const r of threaded) {
      expect(contextText(h.slack.messages.get(r.slackTs as string) as PostedMessage)).toContain(
        'Devin is working on the postmortem',
      );
    }
    expect(JSON.stringify(digestMessage().blocks)).toContain('nothing waits here any more');

    // When a session finishes, its reply goes to the same thread, not under a reply.
    const one = threaded[0] as PostmortemRun;
    h.devin.update(one.devinSessionId as string, {
      status: 'running',
      status_detail: 'finished',
      pull_requests: [{ pr_url: 'https://github.com/acme/postmortems/pull/7', pr_state: 'open' }],
    });
    await h.bot.follower.tick();
    await h.settled(60_000);
    const finished = h.slack
      .callsOf('chat.postMessage')
      .filter((c) => String(c.args.text) === 'The postmortem is ready');
    expect(finished.map((c) => c.args.thread_ts)).toEqual([digest.ts]);
  }, 120_000);

  it('Review: a paginated modal whose checked requests, and only those, are decided', async () => {
    h = await startHarness({ env: APPROVERS });
    await storm(25);
    await h.settled(60_000);
    const digest = digestMessage();

    // A non-approver gets no modal.
    await postSlackInteraction(h.url, buttonClick(h.slack, digest, DIGEST_REVIEW_ACTION_ID, 'UCAROL01'));
    await h.settled();
    expect(lastResponse()).toMatch(/^Only postmortem approvers can do this/);
    expect(h.slack.callsOf('views.open')).toHaveLength(0);

    await postSlackInteraction(h.url, buttonClick(h.slack, digest, DIGEST_REVIEW_ACTION_ID, 'UALICE01'));
    await h.settled();
    const modal = await waitFor(() => h.slack.views[0], 'the Review modal');
    const page1 = JSON.stringify(modal.view.blocks);
    expect(page1).toContain('25 requests wait for a decision');
    expect(page1).toContain('page 1 of 3');
    const options = (modal.view.blocks as any[])
      .find((b) => b.block_id === REVIEW_PICK_BLOCK_ID)
      .elements[0].options.map((o: any) => ({ id: o.value as string, text: o.text.text as string }));
    expect(options).toHaveLength(10);
    // Newest first, as the store orders them: by opening time, then ID (the 25 arrive at once, so which
    // was opened last is not the one sent last).
    const [newest] = (await allRuns()).sort((a, b) =>
      a.createdAt !== b.createdAt ? b.createdAt - a.createdAt : a.id < b.id ? 1 : -1,
    );
    expect(options[0].id).toBe(newest?.id);

    // Older → page 2, then approve two checked there.
    await postSlackInteraction(
      h.url,
      viewBlockActionsPayload({
        view: modal,
        actionId: REVIEW_PAGE_ACTION_ID,
        value: '1',
        userId: 'UALICE01',
      }),
    );
    await h.settled();
    const page2 = h.slack.views[0] as typeof modal;
    expect(JSON.stringify(page2.view.blocks)).toContain('page 2 of 3');
    const page2Options = (page2.view.blocks as any[])
      .find((b) => b.block_id === REVIEW_PICK_BLOCK_ID)
      .elements[0].options.map((o: any) => o.value as string);
    const chosen = [page2Options[0], page2Options[3]];
    const pick = (ids: string[]) => ({
      [REVIEW_PICK_BLOCK_ID]: {
        [REVIEW_PICK_ACTION_ID]: { type: 'checkboxes', selected_options: ids.map((value) => ({ value })) },
      },
    });
    await postSlackInteraction(
      h.url,
      viewBlockActionsPayload({
        view: page2,
        actionId: REVIEW_APPROVE_ACTION_ID,
        userId: 'UALICE01',
        values: pick(chosen),
      }),
    );
    await h.settled(60_000);
    let runs = await allRuns();
    expect(
      runs
        .filter((r) => r.state !== 'awaiting_approval')
        .map((r) => r.id)
        .sort(),
    ).toEqual([...chosen].sort());
    expect(h.devin.createRequests).toHaveLength(2);
    const after = h.slack.views[0] as typeof modal;
    expect(JSON.stringify(after.view.blocks)).toContain('Approved 2 requests.');
    expect(JSON.stringify(after.view.blocks)).toContain('23 requests wait');

    // The same boxes sent again (a double click): already decided, nothing decided twice. Then skip three
    // from the first page.
    await postSlackInteraction(
      h.url,
      viewBlockActionsPayload({
        view: page2,
        actionId: REVIEW_SKIP_ACTION_ID,
        userId: 'UALICE01',
        values: pick(chosen),
      }),
    );
    await h.settled();
    expect(JSON.stringify((h.slack.views[0] as typeof modal).view.blocks)).toContain(
      'Nothing to skip (2 were already decided).',
    );
    const skip = options.slice(0, 3).map((o: { id: string }) => o.id);
    await postSlackInteraction(
      h.url,
      viewBlockActionsPayload({
        view: modal,
        actionId: REVIEW_SKIP_ACTION_ID,
        userId: 'UBOB0001',
        values: pick(skip),
      }),
    );
    await h.settled(60_000);
    runs = await allRuns();
    expect(
      runs
        .filter((r) => r.state === 'skipped')
        .map((r) => r.id)
        .sort(),
    ).toEqual([...skip].sort());
    expect(
      runs
        .filter((r) => r.state === 'started')
        .map((r) => r.id)
        .sort(),
    ).toEqual([...chosen].sort());
    expect(runs.filter((r) => r.state === 'awaiting_approval')).toHaveLength(20);
    expect(h.devin.createRequests).toHaveLength(2);
    // The digest follows: 20 wait.
    expect(JSON.stringify(digestMessage().blocks)).toContain('20 incidents wait for a postmortem decision');
  }, 120_000);

  it('reminds only the requests with a card of their own, expires them all, and then says nothing waits', async () => {
    h = await startHarness({
      env: { ...APPROVERS, APPROVAL_REMIND_AFTER: '24h', APPROVAL_EXPIRE_AFTER: '7d' },
    });
    await storm(7);
    await h.settled(60_000);
    expect(channelPosts()).toHaveLength(6);
    expect(JSON.stringify(digestMessage().blocks)).toContain('7 incidents wait for a postmortem decision');

    h.clock.advance(25 * 3_600_000);
    await h.bot.follower.tick();
    await h.settled(60_000);
    const replies = h.slack.callsOf('chat.postMessage').filter((c) => c.args.thread_ts);
    // The five cards are reminded in their threads; the digest is the reminder of the two folded there.
    expect(replies).toHaveLength(5);
    const cardTs = [...h.slack.messages.values()]
      .filter((m) => hasAction(m, 'postmortem_approve'))
      .map((m) => m.ts);
    expect(new Set(replies.map((c) => c.args.thread_ts))).toEqual(new Set(cardTs));
    expect(await h.bot.store.countJobs()).toMatchObject({ queued: 0, dead: 0 });

    h.clock.advance(7 * 24 * 3_600_000);
    await h.bot.follower.tick();
    await h.settled(60_000);
    expect(await states()).toEqual({ expired: 7 });
    expect(channelPosts()).toHaveLength(6);
    expect(JSON.stringify(digestMessage().blocks)).toContain('nothing waits here any more');
  }, 120_000);
});

describe('SLACK_DIGEST_AFTER=0', () => {
  it('turns the digest off: every request gets its own message', async () => {
    h = await startHarness({ env: { ...APPROVERS, SLACK_DIGEST_AFTER: '0' } });
    await storm(8);
    await h.settled(60_000);
    expect(channelPosts()).toHaveLength(8);
    expect([...h.slack.messages.values()].filter((m) => hasAction(m, 'postmortem_approve'))).toHaveLength(8);
    expect(digestMessage()).toBeUndefined();
  }, 120_000);
});
