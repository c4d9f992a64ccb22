import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  buttonClick,
  contextText,
  type Harness,
  postPagerDuty,
  postSlackInteraction,
  startHarness,
  waitFor,
} from '../helpers/harness.js';
import { STORM_BASE, stormEvent, stormIncidentId } from '../helpers/storm.js';

/**
 * Storms (STORM_WINDOW), what happens when an incident of a group cannot simply be told to the group's
 * session: the session ended or refused the message, its append was given up, the session failed and is
 * retried, its create's outcome was unknown; and how the group's postmortem is noted, its prompt sized
 * and incidents without a service kept apart. Over HTTP, with Slack, Devin and PagerDuty stood in at their
 * HTTP boundary.
 */

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const incidentId = stormIncidentId;

const promptOf = (harness: Harness, index: number) =>
  String((harness.devin.createRequests[index] as { prompt?: string } | undefined)?.prompt);

/** Everything one session was told: its prompt and the messages it accepted. */
function toldSession(harness: Harness, sessionId: string): string {
  const index = harness.devin.sessions.findIndex((s) => s.session_id === sessionId);
  const messages = harness.devin.messages.filter((m) => m.sessionId === sessionId).map((m) => m.message);
  return [promptOf(harness, index), ...messages].join('\n');
}

const covered = (text: string, ids: readonly string[]) => ids.filter((id) => text.includes(`"${id}"`));

/** Resolves when Devin next refuses a message (refuseMessages set). */
const nextRefusal = (harness: Harness) =>
  new Promise<void>((resolve) => {
    const listener = (_s: unknown, change: string) => {
      if (change !== 'message-refused') return;
      harness.devin.events.off('session', listener);
      resolve();
    };
    harness.devin.events.on('session', listener);
  });

const finishWithPr = (harness: Harness, sessionId: string, pr: number) =>
  harness.devin.update(sessionId, {
    status: 'running',
    status_detail: 'finished',
    pull_requests: [{ pr_url: `https://github.com/acme/postmortems/pull/${pr}`, pr_state: 'open' }],
  });

async function startedGroupOfOne(env: Record<string, string> = {}) {
  h = await startHarness({ env: { STORM_WINDOW: '10m', ...env } });
  for (let n = 0; n < 6; n++) h.pagerduty.addIncident({ id: incidentId(n), incident_number: 9000 + n });
  await postPagerDuty(h.url, stormEvent(0));
  await h.settled();
  const session = h.devin.sessions[0];
  if (!session) throw new Error('no session');
  expect((await h.bot.store.recentRuns(10)).map((r) => r.state)).toEqual(['started']);
  return session;
}

describe('storms: incidents that cannot reach the group session are not lost', () => {
  it('the session finished while the append waited (Devin unavailable): the joiner gets a group of its own, and only told incidents are noted', async () => {
    const first = await startedGroupOfOne({ PAGERDUTY_FROM_EMAIL: 'oncall-bot@acme.example' });
    // Devin is unavailable when the joiner is to be sent: the append is retried…
    h.devin.refuseMessages = { status: 503 };
    const refused = nextRefusal(h);
    await postPagerDuty(h.url, stormEvent(1));
    await refused;
    // …and meanwhile the session finishes with its postmortem.
    finishWithPr(h, first.session_id, 1);
    await h.bot.follower.tick();
    h.devin.refuseMessages = undefined;
    await h.settled(30_000);

    const runs = await h.bot.store.recentRuns(10);
    expect(runs.map((r) => [r.incidentId, r.state, r.trigger]).sort()).toEqual([
      [incidentId(0), 'finished', 'auto'],
      [incidentId(1), 'started', 'auto'],
    ]);
    // The first session was never told of incident 1; a second session, started by policy (P1), is.
    expect(covered(toldSession(h, first.session_id), [incidentId(1)])).toEqual([]);
    expect(h.devin.sessions).toHaveLength(2);
    expect(promptOf(h, 1)).toContain(`"${incidentId(1)}"`);
    expect((await h.bot.store.countJobs()).dead).toBe(0);
    // The first postmortem is noted only on the incident it covers.
    expect(h.pagerduty.postedNotes.map((n) => n.incidentId)).toEqual([incidentId(0)]);
    const second = runs.find((r) => r.incidentId === incidentId(1));
    expect((await h.bot.store.stormMembers(String(second?.id))).map((m) => m.incident.id)).toEqual([
      incidentId(1),
    ]);
    expect((await h.bot.store.stormMembers(String(runs.find((r) => r !== second)?.id))).length).toBe(1);
  }, 60_000);

  it('Devin refuses the message for the session: no dead job, the joiners are decided as a group of their own', async () => {
    const first = await startedGroupOfOne();
    h.devin.refuseMessages = { status: 409, detail: 'Session is not accepting messages' };
    await postPagerDuty(h.url, stormEvent(1, { priority: 'P3' }));
    await h.settled(30_000);

    expect((await h.bot.store.countJobs()).dead).toBe(0);
    const runs = await h.bot.store.recentRuns(10);
    // A P3: the new group asks its channel first, as any P3 would, in a message of its own.
    const asked = runs.find((r) => r.incidentId !== incidentId(0));
    expect(asked?.state).toBe('awaiting_approval');
    expect((await h.bot.store.stormMembers(String(asked?.id))).map((m) => m.incident.id)).toEqual([
      incidentId(1),
    ]);
    expect(h.devin.sessions).toHaveLength(1);
    expect(h.devin.messages).toHaveLength(0);
    const message = [...h.slack.messages.values()].find((m) =>
      JSON.stringify(m.blocks).includes('postmortem_approve'),
    );
    if (!message) throw new Error('no approval message');
    expect(JSON.stringify(message.blocks)).toContain('Checkout API 5xx on host 1');
    // The first group's message no longer counts them.
    const firstRun = runs.find((r) => r.incidentId === incidentId(0));
    const firstMessage = h.slack.messages.get(String(firstRun?.slackTs));
    expect(JSON.stringify(firstMessage?.blocks)).not.toContain('incidents on Checkout API');
    expect(first.status).toBeDefined();
  }, 60_000);

  it('a followed group whose joiner was never sent (its append job lost) is sent it on the next follower tick', async () => {
    const first = await startedGroupOfOne();
    const [group] = await h.bot.store.recentRuns(1);
    // The join without its append job, as after an operator discarded a dead one.
    const joined = await h.bot.store.openOrJoinStorm(
      {
        ...group,
        id: 'lost-append',
        incidentId: incidentId(1),
        devinTag: 'pm-run-lost-append',
        state: 'starting',
        incident: { ...(group?.incident as NonNullable<typeof group>['incident']), id: incidentId(1) },
      } as Parameters<typeof h.bot.store.openOrJoinStorm>[0],
      [],
      {
        serviceId: String(group?.incident.serviceId),
        resolvedAt: STORM_BASE + 1000,
        windowMs: 600_000,
        steps: { started: { to: 'started', patch: {}, jobs: () => [] } },
      },
    );
    expect(joined?.outcome).toBe('joined');
    await h.settled();
    expect(h.devin.messages).toHaveLength(0);

    await h.bot.follower.tick();
    await h.settled();
    expect(h.devin.messages.map((m) => m.sessionId)).toEqual([first.session_id]);
    expect(covered(h.devin.messages[0]?.message ?? '', [incidentId(1)])).toEqual([incidentId(1)]);
    // Told once: the next tick sends nothing again.
    await h.bot.follower.tick();
    await h.settled();
    expect(h.devin.messages).toHaveLength(1);
  }, 60_000);
});

describe('storms: a new attempt, notes, prompt size and unknown services', () => {
  it('Retry on a group whose session failed: one new session told every incident of the group', async () => {
    h = await startHarness({ env: { STORM_WINDOW: '10m' } });
    for (const n of [0, 1, 2]) await postPagerDuty(h.url, stormEvent(n, { priority: 'P3' }));
    await h.settled();
    const message = [...h.slack.messages.values()][0];
    if (!message) throw new Error('no message');
    await postSlackInteraction(h.url, buttonClick(h.slack, message, 'postmortem_approve', 'UALICE01'));
    await h.settled();
    const failed = h.devin.sessions[0];
    if (!failed) throw new Error('no session');
    h.devin.update(failed.session_id, { status: 'error' });
    await h.bot.follower.tick();
    await h.settled();
    expect((await h.bot.store.recentRuns(10)).map((r) => r.state)).toEqual(['session_failed']);

    const ids = [0, 1, 2].map(incidentId);
    const current = h.slack.messages.get(message.ts) ?? message;
    // A double click: one new attempt.
    await Promise.all([
      postSlackInteraction(h.url, buttonClick(h.slack, current, 'postmortem_retry', 'UALICE01')),
      postSlackInteraction(h.url, buttonClick(h.slack, current, 'postmortem_retry', 'UBOB0001')),
    ]);
    await h.settled();
    expect(h.devin.sessions).toHaveLength(2);
    const retried = h.devin.sessions[1];
    if (!retried) throw new Error('no second session');
    expect(covered(toldSession(h, retried.session_id), ids)).toEqual(ids);
    expect(promptOf(h, 1)).toContain('one of 3 incidents of the same service');
    const runs = await h.bot.store.recentRuns(10);
    expect(runs.map((r) => [r.incidentId, r.attempt, r.state]).sort()).toEqual([
      [incidentId(0), 1, 'session_failed'],
      [incidentId(0), 2, 'started'],
    ]);
    const attempt2 = runs.find((r) => r.attempt === 2);
    const members = await h.bot.store.stormMembers(String(attempt2?.id));
    expect(members.map((m) => m.incident.id)).toEqual(ids);
    expect(members.every((m) => m.deliveredAt !== null)).toBe(true);
    const newMessage = h.slack.messages.get(String(attempt2?.slackTs));
    expect(JSON.stringify(newMessage?.blocks)).toContain('3 incidents on Checkout API');
  }, 60_000);

  it('a 429 halfway through noting a group: the retry notes only the incidents not noted yet', async () => {
    h = await startHarness({ env: { STORM_WINDOW: '10m', PAGERDUTY_FROM_EMAIL: 'oncall-bot@acme.example' } });
    const ids = [0, 1, 2, 3, 4].map(incidentId);
    for (let n = 0; n < 5; n++) h.pagerduty.addIncident({ id: incidentId(n), incident_number: 9000 + n });
    for (let n = 0; n < 5; n++) await postPagerDuty(h.url, stormEvent(n));
    await h.settled();
    const session = h.devin.sessions[0];
    if (!session) throw new Error('no session');
    // PagerDuty rate-limits the third note.
    h.pagerduty.events.on('note', () => {
      // More 429s in a row than the client waits out itself: the job fails and is retried.
      if (h.pagerduty.postedNotes.length === 2) h.pagerduty.rateLimitNext(5);
    });
    finishWithPr(h, session.session_id, 9);
    await h.bot.follower.tick();
    await h.settled(30_000);
    const noted = h.pagerduty.postedNotes.map((n) => n.incidentId);
    expect(noted.length).toBe(5);
    expect([...noted].sort()).toEqual(ids);
    const [run] = await h.bot.store.recentRuns(1);
    expect((await h.bot.store.stormMembers(String(run?.id))).every((m) => m.notedAt !== null)).toBe(true);
  }, 60_000);

  it('a large team template: the prompt stays within 30,000 characters, the incidents that do not fit go by message', async () => {
    // Within the 8,000-character limit, but placing the (long) title many times: about 25,000 characters
    // before any timeline, more than a fixed 12,000-character storm part leaves.
    const template = [
      'Team postmortem guide.',
      ...Array.from({ length: 22 }, (_, i) => `Title, for section ${i}: {{title}}`),
      '{{incident_data}}',
      '{{steps}}',
    ].join('\n');
    const dir = mkdtempSync(join(tmpdir(), 'storm-template-'));
    writeFileSync(join(dir, 'team.md'), template);
    h = await startHarness({ env: { STORM_WINDOW: '10m', PROMPT_TEMPLATE_FILE: join(dir, 'team.md') } });
    const ids = Array.from({ length: 12 }, (_, n) => incidentId(n));
    for (let n = 0; n < 12; n++) {
      h.pagerduty.addIncident({ id: incidentId(n), incident_number: 9000 + n });
      h.pagerduty.records.set(incidentId(n), {
        log_entries: [],
        notes: Array.from({ length: 60 }, (_, i) => ({
          content: `Host ${n} still failing health checks, attempt ${i}: ${'5xx '.repeat(20)}`,
          created_at: new Date(STORM_BASE - 3_600_000 + i * 1000).toISOString(),
          user: { summary: 'On-call' },
        })),
        alerts: [],
        change_events: [],
      });
    }
    for (const n of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]) {
      await postPagerDuty(
        h.url,
        stormEvent(n, { priority: 'P3', title: `Checkout API 5xx on host ${n}: ${'y'.repeat(950)}` }),
      );
    }
    await h.settled(30_000);
    const message = [...h.slack.messages.values()][0];
    if (!message) throw new Error('no message');
    await postSlackInteraction(h.url, buttonClick(h.slack, message, 'postmortem_approve', 'UALICE01'));
    await h.settled(60_000);

    expect(h.devin.sessions).toHaveLength(1);
    const prompt = promptOf(h, 0);
    expect(prompt.length).toBeLessThanOrEqual(30_000);
    expect(prompt).toContain('Team postmortem guide.');
    for (const m of h.devin.messages) expect(m.message.length).toBeLessThanOrEqual(30_000);
    // Every incident reached the session once: in the prompt or in a message.
    const session = h.devin.sessions[0];
    expect(covered(toldSession(h, String(session?.session_id)), ids)).toEqual(ids);
    const inMessages = h.devin.messages.flatMap((m) => covered(m.message, ids));
    expect(inMessages.length).toBeGreaterThan(0);
    expect(inMessages.filter((id) => covered(prompt, [id]).length > 0)).toEqual([]);
  }, 120_000);

  it('incidents whose events name no service are not grouped with each other', async () => {
    h = await startHarness({ env: { STORM_WINDOW: '10m' } });
    for (const n of [0, 1, 2]) {
      const event = stormEvent(n);
      delete event.event.data.service;
      await postPagerDuty(h.url, event);
    }
    await h.settled();
    const runs = await h.bot.store.recentRuns(10);
    expect(runs).toHaveLength(3);
    expect(runs.every((r) => r.incident.serviceId === 'unknown')).toBe(true);
    expect(h.devin.sessions).toHaveLength(3);
    expect(h.devin.messages).toHaveLength(0);
    for (const run of runs) expect(await h.bot.store.stormMembers(run.id)).toEqual([]);
    expect(JSON.stringify([...h.slack.messages.values()].map((m) => m.blocks))).not.toContain('incidents on');
    expect(contextText([...h.slack.messages.values()][0] as never)).toContain('Started automatically');
  });

  it('a create whose answer was lost and whose session is found by its tag: the incidents its prompt carried are not sent again', async () => {
    h = await startHarness({
      env: { STORM_WINDOW: '10m' },
      configure: (c) => {
        c.tuning.devinTimeoutMs = 300;
      },
    });
    for (const n of [0, 1, 2]) await postPagerDuty(h.url, stormEvent(n, { priority: 'P3' }));
    await h.settled();
    const message = [...h.slack.messages.values()][0];
    if (!message) throw new Error('no message');
    // Devin creates the session but answers after the bot gave up waiting.
    h.devin.nextCreates({ kind: 'create-then-delay', delayMs: 1000 });
    await postSlackInteraction(h.url, buttonClick(h.slack, message, 'postmortem_approve', 'UALICE01'));
    const session = await waitFor(() => h.devin.sessions[0], 'the session');
    await waitFor(
      () => [...h.slack.messages.values()].some((m) => contextText(m).includes(session.url)),
      'the started message with the session created by the timed-out call',
      15_000,
    );
    await h.settled(30_000);
    expect(h.devin.sessions).toHaveLength(1);
    expect(h.devin.createRequests).toHaveLength(1);
    expect(covered(promptOf(h, 0), [0, 1, 2].map(incidentId))).toHaveLength(3);
    expect(h.devin.messages).toHaveLength(0);
    const [run] = await h.bot.store.recentRuns(1);
    expect(run?.state).toBe('started');
    expect((await h.bot.store.stormMembers(String(run?.id))).every((m) => m.deliveredAt !== null)).toBe(true);
  }, 60_000);
});
