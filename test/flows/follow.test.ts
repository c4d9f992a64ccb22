import { afterEach, describe, expect, it } from 'vitest';
import type { PostmortemRun } from '../../src/postmortems/model.js';
import {
  buttonClick,
  fixture,
  type Harness,
  postPagerDuty,
  postSlackInteraction,
  postSlashCommand,
  resolvedEvent,
  startHarness,
  waitFor,
} from '../helpers/harness.js';

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const HOUR = 3_600_000;

const text = (m: { blocks: unknown[] }) => JSON.stringify(m.blocks);
const threadReplies = () => h.slack.callsOf('chat.postMessage').filter((c) => c.args.thread_ts);
const topLevelPosts = () => h.slack.callsOf('chat.postMessage').filter((c) => !c.args.thread_ts);

async function tick(): Promise<void> {
  await h.settled();
  await h.bot.follower.tick();
  await h.settled();
}

/** The newest run. */
async function latestRun(): Promise<PostmortemRun> {
  const [run] = await h.bot.store.recentRuns(1);
  if (!run) throw new Error('no run yet');
  return run;
}

async function autoStartedSession() {
  await postPagerDuty(h.url, resolvedEvent({ priority: 'P1' }));
  const session = await waitFor(() => h.devin.sessions[0], 'the session');
  await h.settled();
  return session;
}

describe('following a Devin session to its end', () => {
  it('walks new → working → waiting_for_user → working → finished, with each Slack call once', async () => {
    h = await startHarness();
    const session = await autoStartedSession();
    const message = [...h.slack.messages.values()][0] as { blocks: unknown[]; ts: string };
    expect(text(message)).toContain('postmortem_stop');
    const sessionFields = (h.devin.createRequests[0] as any).structured_output_schema;
    expect(sessionFields.required).toEqual([
      'summary',
      'root_cause',
      'impact',
      'action_items',
      'postmortem_pr_url',
    ]);

    h.devin.update(session.session_id, { status: 'running', status_detail: 'working' });
    await tick();
    await tick();
    expect(threadReplies()).toHaveLength(0);
    expect(h.slack.callsOf('chat.update')).toHaveLength(0);
    expect(await latestRun()).toMatchObject({
      state: 'started',
      devinStatus: 'running',
      devinStatusDetail: 'working',
    });

    h.devin.update(session.session_id, { status_detail: 'waiting_for_user' });
    await tick();
    await tick();
    expect(threadReplies()).toHaveLength(1);
    expect(threadReplies()[0]?.args.thread_ts).toBe(message.ts);
    expect(JSON.stringify(threadReplies()[0]?.args.blocks)).toContain(
      'Devin needs a person to go on with this postmortem (running: waiting_for_user)',
    );
    expect(text(message)).toContain('Devin is waiting for a person');

    h.devin.update(session.session_id, { status_detail: 'working' });
    await tick();
    expect(threadReplies()).toHaveLength(1);
    expect(text(message)).toContain('Devin is working on the postmortem');

    h.devin.update(session.session_id, {
      status_detail: 'finished',
      pull_requests: [{ pr_url: 'https://github.com/acme/postmortems/pull/42', pr_state: 'open' }],
      structured_output: {
        summary: 'A config push set the pool size to 1 <!channel>.',
        root_cause: 'Bad config',
        impact: '35% of checkouts failed for 85 minutes',
        action_items: [
          { title: 'Validate pool size', owner: 'payments' },
          { title: 'Alert on pool saturation' },
          { nope: 1 },
        ],
        postmortem_pr_url: 'https://github.com/acme/postmortems/pull/42',
      },
    });
    await tick();
    await tick();
    expect(threadReplies()).toHaveLength(2);
    const done = JSON.stringify(threadReplies()[1]?.args.blocks);
    expect(done).toContain(
      '<https://github.com/acme/postmortems/pull/42|github.com/acme/postmortems/pull/42>',
    );
    expect(done).toContain('A config push set the pool size to 1 &lt;!channel&gt;.');
    expect(done).toContain('• Validate pool size (payments)');
    expect(done).toContain('• Alert on pool saturation');
    expect(text(message)).toContain(
      'Postmortem ready: <https://github.com/acme/postmortems/pull/42|pull request>',
    );
    expect(text(message)).not.toContain('postmortem_stop');

    expect(topLevelPosts()).toHaveLength(1);
    expect(h.slack.callsOf('chat.update')).toHaveLength(3);
    // A finished run is no longer polled.
    const polls = h.devin.getRequests.length;
    await tick();
    expect(h.devin.getRequests.length).toBe(polls);
  });

  it('a finished session with 40 pull requests: message, thread reply and status stay valid Block Kit', async () => {
    h = await startHarness();
    const session = await autoStartedSession();
    const message = [...h.slack.messages.values()][0] as { blocks: unknown[]; ts: string };
    const urls = Array.from(
      { length: 40 },
      (_, i) => `https://github.com/acme/a-rather-long-repository-name-${i}/pull/${1000 + i}`,
    );
    h.devin.update(session.session_id, {
      status_detail: 'finished',
      pull_requests: urls.map((pr_url) => ({ pr_url, pr_state: 'open' })),
    });
    await tick();
    await tick();
    // The Slack stand-in refuses blocks over Block Kit's limits (invalid_blocks): these were accepted.
    const done = await waitFor(() => threadReplies()[0], 'the finished thread reply');
    expect(h.slack.calls.filter((c) => c.method.endsWith('!fault'))).toEqual([]);
    expect(text(message)).toContain(`<${urls[0]}|pull request 1>`);
    expect(text(message)).toMatch(/…and \d+ more in the thread/);
    const reply = JSON.stringify(done.args.blocks);
    expect(reply).toContain(`<${urls[0]}|github.com/acme/a-rather-long-repository-name-0/pull/1000>`);
    expect(reply).toMatch(/…and \d+ more pull requests/);
    expect((await h.bot.store.runsForIncident('Q2K8TBZ1L3KJ7M'))[0]?.pullRequests).toEqual(urls);

    await postSlashCommand(h, 'status 4711');
    await waitFor(() => h.slack.responses[0], 'the status reply');
    const status = String(h.slack.responses[0]?.body.text);
    expect(status).toContain(`<${urls[0]}|PR 1>`);
    expect(status).toContain('…and 37 more PRs');
  });

  it('reports an error, and a suspension for lack of credits, with a Retry button', async () => {
    h = await startHarness();
    const session = await autoStartedSession();
    h.devin.update(session.session_id, { status: 'suspended', status_detail: 'out_of_credits' });
    await tick();
    await tick();
    expect(threadReplies()).toHaveLength(1);
    const reply = JSON.stringify(threadReplies()[0]?.args.blocks);
    expect(reply).toContain(
      'Devin suspended the session because the organization is out of credits (out_of_credits)',
    );
    expect(reply).toContain('postmortem_retry');
    expect((await latestRun()).state).toBe('session_failed');

    // Retry on a failed session starts a new attempt, once.
    const message = [...h.slack.messages.values()][0] as any;
    await postSlackInteraction(h.url, buttonClick(h.slack, message, 'postmortem_retry', 'UALICE01'));
    await waitFor(() => h.devin.sessions.length === 2, 'the retried session');
    await h.settled();
    expect(await latestRun()).toMatchObject({ attempt: 2, state: 'started', decidedBy: 'UALICE01' });

    h.devin.update(h.devin.sessions[1]?.session_id ?? '', { status: 'error' });
    await tick();
    expect(JSON.stringify(threadReplies().at(-1)?.args.blocks)).toContain(
      'Devin reported an error in the session',
    );
  });

  it('survives a restart in the middle: nothing is posted again, and following resumes', async () => {
    h = await startHarness();
    const session = await autoStartedSession();
    h.devin.update(session.session_id, { status: 'running', status_detail: 'waiting_for_user' });
    await tick();
    const before = h.slack.calls.length;
    await h.restart();
    await tick();
    await tick();
    expect(h.slack.calls.length).toBe(before);
    h.devin.update(session.session_id, { status_detail: 'finished' });
    await tick();
    expect(threadReplies()).toHaveLength(2);
    expect(JSON.stringify(threadReplies()[1]?.args.blocks)).toContain('Devin reported no pull request');
  });

  it('gives a session up after SESSION_GIVE_UP_AFTER, with a note', async () => {
    h = await startHarness({ env: { SESSION_GIVE_UP_AFTER: '6h' } });
    const session = await autoStartedSession();
    h.devin.update(session.session_id, { status: 'running', status_detail: 'working' });
    h.clock.advance(7 * HOUR);
    await tick();
    expect((await latestRun()).state).toBe('abandoned');
    expect(JSON.stringify(threadReplies()[0]?.args.blocks)).toContain(
      'The session had not finished after 6h, so the bot stopped following it and terminated it in Devin',
    );
    // Unwatched, it would go on consuming ACUs.
    await waitFor(() => h.devin.terminated.length === 1, 'the terminate call');
    expect(h.devin.terminated).toEqual([session.session_id]);
    const polls = h.devin.getRequests.length;
    await tick();
    expect(h.devin.getRequests.length).toBe(polls);
  });

  it('a session Devin no longer has ends as failed, with a note, once', async () => {
    h = await startHarness();
    const session = await autoStartedSession();
    h.devin.sessions.splice(h.devin.sessions.indexOf(session), 1);
    await tick();
    await tick();
    expect((await latestRun()).state).toBe('session_failed');
    expect(threadReplies()).toHaveLength(1);
    expect(JSON.stringify(threadReplies()[0]?.args.blocks)).toContain('Devin no longer has this session');
  });

  it('Stop terminates the session and records who', async () => {
    h = await startHarness();
    const session = await autoStartedSession();
    const message = [...h.slack.messages.values()][0] as any;
    await Promise.all([
      postSlackInteraction(h.url, buttonClick(h.slack, message, 'postmortem_stop', 'UBOB0001')),
      postSlackInteraction(h.url, buttonClick(h.slack, message, 'postmortem_stop', 'UBOB0001')),
    ]);
    await waitFor(() => h.devin.terminated.length === 1, 'the terminate call');
    await h.settled();
    expect(h.devin.terminated).toEqual([session.session_id]);
    expect(await latestRun()).toMatchObject({ state: 'stopped', stoppedBy: 'UBOB0001' });
    expect(text(message)).toContain('Stopped by <@UBOB0001>');
    expect(text(message)).not.toContain('postmortem_stop');
    const polls = h.devin.getRequests.length;
    await tick();
    expect(h.devin.getRequests.length).toBe(polls);
  });
});

describe('early start', () => {
  function acknowledged(priority: string, occurredAt = '2024-03-05T09:20:00Z') {
    const body = fixture('pagerduty/incident-triggered.json');
    body.event.id = `ack-${occurredAt}`;
    body.event.event_type = 'incident.acknowledged';
    body.event.occurred_at = occurredAt;
    body.event.data.status = 'acknowledged';
    body.event.data.priority = { id: 'PPRI1', summary: priority };
    return body;
  }

  it('starts gathering on acknowledgement, then on resolve sends one message and creates no second session', async () => {
    h = await startHarness({ env: { EARLY_START_PRIORITIES: 'P1' } });
    await postPagerDuty(h.url, acknowledged('P1'));
    const session = await waitFor(() => h.devin.sessions[0], 'the early session');
    await h.settled();
    expect((h.devin.createRequests[0] as any).prompt).toContain(
      'it has been acknowledged but is not resolved yet',
    );
    const message = [...h.slack.messages.values()][0] as any;
    expect(text(message)).toContain('Devin is gathering evidence while the incident is open');

    // While gathering, waiting or even finishing is expected: no replies.
    h.devin.update(session.session_id, { status: 'running', status_detail: 'waiting_for_user' });
    await tick();
    expect(threadReplies()).toHaveLength(0);

    await postPagerDuty(h.url, resolvedEvent({ priority: 'P1' }));
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P1' }));
    await waitFor(() => h.devin.messages.length === 1, 'the finalize message');
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(1);
    expect(h.devin.messages[0]?.message).toContain('The incident is now resolved. Finish the postmortem');
    expect(h.devin.messages[0]?.message).toContain('"resolved": "2024-03-05T10:42:11.523Z"');
    expect(text(message)).toContain('Devin is working on the postmortem');

    h.devin.update(session.session_id, { status_detail: 'finished' });
    await tick();
    expect(await latestRun()).toMatchObject({ state: 'finished', trigger: 'early' });
    expect(threadReplies()).toHaveLength(1);
  });

  it('stops following when the incident does not resolve within EARLY_START_MAX_WAIT, and says so', async () => {
    h = await startHarness({ env: { EARLY_START_PRIORITIES: 'P1', EARLY_START_MAX_WAIT: '12h' } });
    await postPagerDuty(h.url, acknowledged('P1'));
    await waitFor(() => h.devin.sessions[0], 'the early session');
    await h.settled();
    h.clock.advance(13 * HOUR);
    await tick();
    expect((await latestRun()).state).toBe('abandoned');
    expect(JSON.stringify(threadReplies()[0]?.args.blocks)).toContain(
      'The incident was not resolved within 12h of the early start, so the bot stopped following this session and terminated it in Devin',
    );
    await waitFor(() => h.devin.terminated.length === 1, 'the terminate call');
    expect(h.devin.terminated).toEqual([h.devin.sessions[0]?.session_id]);
  });

  it('an early start given up before the resolve leaves the decision to a person', async () => {
    h = await startHarness({ env: { EARLY_START_PRIORITIES: 'P1', EARLY_START_MAX_WAIT: '1h' } });
    await postPagerDuty(h.url, acknowledged('P1'));
    await waitFor(() => h.devin.sessions[0], 'the early session');
    await h.settled();
    h.clock.advance(2 * HOUR);
    await tick();
    expect((await latestRun()).state).toBe('abandoned');
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P1' }));
    await waitFor(async () => (await h.bot.store.recentRuns(1))[0]?.attempt === 2, 'a second run');
    await h.settled();
    expect(await latestRun()).toMatchObject({ attempt: 2, state: 'awaiting_approval', trigger: 'approval' });
    expect(h.devin.createRequests).toHaveLength(1);
  });

  it('does not start early for other priorities', async () => {
    h = await startHarness({ env: { EARLY_START_PRIORITIES: 'P1' } });
    await postPagerDuty(h.url, acknowledged('P2'));
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(0);
  });
});

describe('approval reminders and expiry', () => {
  it('reminds once after APPROVAL_REMIND_AFTER and expires once after APPROVAL_EXPIRE_AFTER', async () => {
    h = await startHarness({ env: { APPROVAL_REMIND_AFTER: '24h', APPROVAL_EXPIRE_AFTER: '7d' } });
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P3' }));
    const message = await waitFor(() => [...h.slack.messages.values()][0], 'the approval message');
    await tick();
    expect(threadReplies()).toHaveLength(0);

    h.clock.advance(25 * HOUR);
    await tick();
    await tick();
    expect(threadReplies()).toHaveLength(1);
    expect(JSON.stringify(threadReplies()[0]?.args.blocks)).toContain(
      'Reminder: this postmortem is still waiting',
    );
    expect(text(message)).toContain('postmortem_approve');

    h.clock.advance(7 * 24 * HOUR);
    await tick();
    await tick();
    expect((await latestRun()).state).toBe('expired');
    expect(text(message)).not.toContain('postmortem_approve');
    expect(text(message)).toContain('the request expired');
    expect(threadReplies()).toHaveLength(1);
    expect(h.slack.callsOf('chat.update')).toHaveLength(1);
  });
});

describe('the schedule', () => {
  it('ticks on SESSION_POLL_CRON by itself', async () => {
    h = await startHarness({ env: { SESSION_POLL_CRON: '* * * * * *' }, followOnSchedule: true });
    const session = await autoStartedSession();
    h.devin.update(session.session_id, { status: 'running', status_detail: 'finished' });
    await waitFor(
      async () => (await latestRun()).state === 'finished',
      'a scheduled tick to see the finished session',
      5000,
    );
  });
});
