import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createPostmortemBot, type PostmortemBot } from '../../src/app.js';
import { createLogger } from '../../src/logging.js';
import { DAY_MS } from '../../src/postmortems/budget.js';
import type { PostmortemRun } from '../../src/postmortems/model.js';
import { FakeDevin } from '../helpers/fake-devin.js';
import { FakeSlack } from '../helpers/fake-slack.js';
import {
  buttonClick,
  contextText,
  type Harness,
  LogCapture,
  postPagerDuty,
  postSlackInteraction,
  postSlashCommand,
  resolvedEvent,
  startHarness,
  testConfig,
  testEnv,
  waitFor,
} from '../helpers/harness.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

/**
 * The daily budget (DEVIN_DAILY_SESSION_LIMIT, DEVIN_DAILY_ACU_LIMIT) and the concurrency cap
 * (DEVIN_MAX_CONCURRENT_SESSIONS), driven over HTTP: PagerDuty webhooks in, Slack clicks and commands,
 * Devin's stand-in reporting sessions and their ACUs.
 */

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** A resolved P1 of its own service (incidents of one service within STORM_WINDOW would share a run). */
const p1 = (n: number) =>
  resolvedEvent({
    eventId: `cost-${n}`,
    incidentId: `PCOST${n}`,
    number: 9000 + n,
    priority: 'P1',
    serviceId: `PSVCCOST${n}`,
    serviceName: `Service ${n}`,
  });

const text = (m: { blocks: unknown[] }) => JSON.stringify(m.blocks);

async function runOf(harness: Harness, n: number): Promise<PostmortemRun> {
  const [run] = await harness.bot.store.runsForIncident(`PCOST${n}`);
  if (!run) throw new Error(`no run for incident ${n}`);
  return run;
}

async function messageOf(harness: Harness, n: number) {
  const run = await waitFor(async () => {
    const r = await runOf(harness, n).catch(() => undefined);
    return r?.slackTs ? r : undefined;
  }, `the message of incident ${n}`);
  return harness.slack.messages.get(run.slackTs as string) as {
    channel: string;
    ts: string;
    blocks: unknown[];
  };
}

async function tick(harness: Harness): Promise<void> {
  await harness.settled();
  await harness.bot.follower.tick();
  await harness.settled();
}

describe('the daily budget', () => {
  it('DEVIN_DAILY_SESSION_LIMIT=2 and three P1s: two sessions and one approval saying why; an approver’s Approve starts the third as a recorded override', async () => {
    h = await startHarness({ env: { DEVIN_DAILY_SESSION_LIMIT: '2', SLACK_APPROVERS: 'UALICE01' } });
    const harness = h;
    const statuses = await Promise.all([1, 2, 3].map((n) => postPagerDuty(harness.url, p1(n))));
    expect(statuses.map((r) => r.status)).toEqual([202, 202, 202]);
    await h.settled();

    expect(h.devin.createRequests).toHaveLength(2);
    const runs = await Promise.all([1, 2, 3].map((n) => runOf(harness, n)));
    const held = runs.filter((r) => r.state === 'awaiting_approval');
    expect(held).toHaveLength(1);
    expect(held[0]?.budgetHold).toBe('daily_sessions');
    expect(runs.filter((r) => r.state === 'started')).toHaveLength(2);
    const heldN = runs.indexOf(held[0] as PostmortemRun) + 1;
    const card = await messageOf(h, heldN);
    expect(contextText(card)).toContain(
      "Not started automatically: the daily session limit is reached (2 sessions of 2 today, DEVIN_DAILY_SESSION_LIMIT). *Approve* overrides today's budget.",
    );
    expect(contextText(card)).toContain('Devin budget left today (UTC): 0 of 2 sessions.');
    expect(text(card)).toContain('postmortem_approve');
    expect(h.logs.text).toContain(
      "the day's Devin budget is reached: asking for approval instead of starting",
    );

    // Someone who may not spend cannot override the budget.
    await postSlackInteraction(h.url, buttonClick(h.slack, card, 'postmortem_approve', 'UBOB0001'));
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(2);
    expect((await runOf(h, heldN)).state).toBe('awaiting_approval');

    // An approver's Approve is the override: the third session starts, and who overrode is kept and shown.
    await postSlackInteraction(h.url, buttonClick(h.slack, card, 'postmortem_approve', 'UALICE01'));
    await waitFor(() => h?.devin.createRequests.length === 3, 'the third session');
    await h.settled();
    expect(await runOf(h, heldN)).toMatchObject({
      state: 'started',
      decidedBy: 'UALICE01',
      budgetOverrideBy: 'UALICE01',
      budgetHold: 'daily_sessions',
    });
    expect(contextText(card)).toContain(
      "Approved by <@UALICE01> over today's Devin budget (an override; priority P1 would have started it).",
    );
    const override = h.logs.lines
      .map((l) => JSON.parse(l))
      .find((l) => l.msg === "postmortem started over the day's Devin budget: override by a person");
    expect(override).toMatchObject({ userId: 'UALICE01', budgetHold: 'daily_sessions' });

    // /postmortem status shows today's use: three sessions against a limit of two.
    await postSlashCommand(h, 'status', { userId: 'UALICE01' });
    const reply = await waitFor(
      () =>
        h?.slack.responses.map((r) => String(r.body.text)).find((t) => t.includes('Recent postmortem runs')),
      'the status reply',
    );
    expect(reply).toContain('Devin today (UTC): 3 sessions of 2 started, 0 ACUs consumed; 3 running now.');
    expect(reply).toContain('over budget: override by <@UALICE01>');
  });

  it('DEVIN_DAILY_ACU_LIMIT reached by what Devin reports consumed: the next P1 asks', async () => {
    h = await startHarness({ env: { DEVIN_DAILY_ACU_LIMIT: '5' } });
    await postPagerDuty(h.url, p1(1));
    const session = await waitFor(() => h?.devin.sessions[0], 'the first session');
    await h.settled();
    // Below the limit nothing is held.
    h.devin.update(session.session_id, { acus_consumed: 2.5 });
    await tick(h);
    await postPagerDuty(h.url, p1(2));
    await waitFor(() => h?.devin.createRequests.length === 2, 'the second session');
    await h.settled();
    const second = h.devin.sessions[1];
    h.devin.update(second?.session_id as string, { acus_consumed: 3 });
    await tick(h);
    expect((await runOf(h, 2)).acusConsumed).toBe(3);

    await postPagerDuty(h.url, p1(3));
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(2);
    expect(await runOf(h, 3)).toMatchObject({ state: 'awaiting_approval', budgetHold: 'daily_acus' });
    const card = await messageOf(h, 3);
    expect(contextText(card)).toContain(
      'the daily ACU limit is reached (5.5 ACUs of 5 ACUs today, DEVIN_DAILY_ACU_LIMIT)',
    );
    expect(contextText(card)).toContain('Devin budget left today (UTC): 0 ACUs of 5 ACUs.');
  });

  it('the day rolling over (UTC) resets the count', async () => {
    h = await startHarness({ env: { DEVIN_DAILY_SESSION_LIMIT: '1' } });
    // Start just after a UTC midnight, so one step of a day is the next day for certain.
    h.clock.advance(DAY_MS - (h.clock.now() % DAY_MS) + 1000);
    await postPagerDuty(h.url, p1(1));
    await waitFor(() => h?.devin.createRequests.length === 1, 'the first session');
    await postPagerDuty(h.url, p1(2));
    await h.settled();
    expect((await runOf(h, 2)).state).toBe('awaiting_approval');
    expect(h.devin.createRequests).toHaveLength(1);

    h.clock.advance(DAY_MS);
    await postPagerDuty(h.url, p1(3));
    await waitFor(() => h?.devin.createRequests.length === 2, 'the next day’s session');
    await h.settled();
    expect(await runOf(h, 3)).toMatchObject({ state: 'started', budgetHold: null });
    // Yesterday's held request is still a person's to decide; it said what was left of its day.
    const card = await messageOf(h, 2);
    expect(contextText(card)).toContain('Devin budget left today (UTC): 0 of 1 session.');
  });
});

describe('the concurrency cap', () => {
  it('DEVIN_MAX_CONCURRENT_SESSIONS=1 and two P1s: the second waits, saying so, and starts only when the first finishes', async () => {
    h = await startHarness({ env: { DEVIN_MAX_CONCURRENT_SESSIONS: '1' } });
    await postPagerDuty(h.url, p1(1));
    const first = await waitFor(() => h?.devin.sessions[0], 'the first session');
    await h.settled();
    await postPagerDuty(h.url, p1(2));
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(1);
    expect((await runOf(h, 2)).state).toBe('queued');
    const waiting = await messageOf(h, 2);
    expect(contextText(waiting)).toContain(
      'Started automatically (priority P1). Devin session waiting: 1 session running (at most 1 at once, DEVIN_MAX_CONCURRENT_SESSIONS). It starts by itself, oldest first, when one ends.',
    );
    expect(text(waiting)).toContain('postmortem_stop');

    // A person's explicit start waits its turn too (behind the queued automatic one).
    await postPagerDuty(
      h.url,
      resolvedEvent({
        eventId: 'cost-p3',
        incidentId: 'PCOST3',
        number: 9003,
        priority: 'P3',
        serviceId: 'PSVCCOST3',
      }),
    );
    const card = await messageOf(h, 3);
    await postSlackInteraction(h.url, buttonClick(h.slack, card, 'postmortem_approve', 'UALICE01'));
    await waitFor(async () => (await runOf(h as Harness, 3)).state === 'queued', 'the approved run to wait');
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(1);

    // A follower tick with nothing ended starts nothing.
    await tick(h);
    expect(h.devin.createRequests).toHaveLength(1);

    h.devin.update(first.session_id, { status_detail: 'finished' });
    await tick(h);
    expect((await runOf(h, 1)).state).toBe('finished');
    expect(h.devin.createRequests).toHaveLength(2);
    expect((h.devin.createRequests[1] as any).tags).toContain('incident:PCOST2');
    expect((await runOf(h, 2)).state).toBe('started');
    expect((await runOf(h, 3)).state).toBe('queued');
    expect(contextText(waiting)).toContain('Devin is working on the postmortem');

    // Stopping the live one lets the approved one start.
    const second = await messageOf(h, 2);
    await postSlackInteraction(h.url, buttonClick(h.slack, second, 'postmortem_stop', 'UALICE01'));
    await waitFor(() => h?.devin.createRequests.length === 3, 'the third session');
    await h.settled();
    expect(await runOf(h, 3)).toMatchObject({ state: 'started', decidedBy: 'UALICE01' });
  });
});

describe('with storm groups (STORM_WINDOW)', () => {
  const ofService = (n: number, service: string, priority: string) =>
    resolvedEvent({
      eventId: `storm-cost-${n}`,
      incidentId: `PCOST${n}`,
      number: 9000 + n,
      priority,
      serviceId: service,
      serviceName: `Service ${service}`,
    });

  it('a group born beyond the cap waits, takes joiners while it waits, and its one session covers them all', async () => {
    h = await startHarness({ env: { DEVIN_MAX_CONCURRENT_SESSIONS: '1', STORM_WINDOW: '10m' } });
    await postPagerDuty(h.url, ofService(1, 'PSVCA', 'P1'));
    const first = await waitFor(() => h?.devin.sessions[0], 'the first session');
    await h.settled();
    await postPagerDuty(h.url, ofService(2, 'PSVCB', 'P1'));
    await h.settled();
    await postPagerDuty(h.url, ofService(3, 'PSVCB', 'P1'));
    await h.settled();
    const group = await runOf(h, 2);
    expect(group.state).toBe('queued');
    expect(await h.bot.store.runsForIncident('PCOST3')).toEqual([]);
    expect((await h.bot.store.stormMembers(group.id)).map((m) => m.incident.id)).toEqual([
      'PCOST2',
      'PCOST3',
    ]);
    expect(h.devin.createRequests).toHaveLength(1);

    h.devin.update(first.session_id, { status_detail: 'finished' });
    await tick(h);
    expect(h.devin.createRequests).toHaveLength(2);
    const prompt = String((h.devin.createRequests[1] as any).prompt);
    expect(prompt).toContain('PCOST2');
    expect(prompt).toContain('PCOST3');
    expect((await runOf(h, 2)).state).toBe('started');
  });

  it('over the day’s budget, an auto-start incident joining a group that asks does not start it: the group keeps asking, saying why', async () => {
    h = await startHarness({ env: { DEVIN_DAILY_SESSION_LIMIT: '1', STORM_WINDOW: '10m' } });
    await postPagerDuty(h.url, ofService(1, 'PSVCA', 'P1'));
    await waitFor(() => h?.devin.createRequests.length === 1, 'the first session');
    await h.settled();
    await postPagerDuty(h.url, ofService(2, 'PSVCB', 'P3'));
    await h.settled();
    expect(await runOf(h, 2)).toMatchObject({ state: 'awaiting_approval', budgetHold: null });
    await postPagerDuty(h.url, ofService(3, 'PSVCB', 'P1'));
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(1);
    const group = await runOf(h, 2);
    expect(group).toMatchObject({ state: 'awaiting_approval', budgetHold: 'daily_sessions' });
    const card = await messageOf(h, 2);
    expect(text(card)).toContain('2 incidents on Service PSVCB');
    expect(contextText(card)).toContain('Not started automatically: the daily session limit is reached');
    // Approving the group is the override.
    await postSlackInteraction(h.url, buttonClick(h.slack, card, 'postmortem_approve', 'UALICE01'));
    await waitFor(() => h?.devin.createRequests.length === 2, 'the group’s session');
    await h.settled();
    expect(await runOf(h, 2)).toMatchObject({ state: 'started', budgetOverrideBy: 'UALICE01' });
  });
});

describe('on several replicas (Postgres)', () => {
  const bots: PostmortemBot[] = [];
  let db: TestDatabase | undefined;
  let slack: FakeSlack | undefined;
  let devin: FakeDevin | undefined;
  afterEach(async () => {
    await Promise.all(bots.splice(0).map((b) => b.stop().catch(() => {})));
    await slack?.close();
    await devin?.close();
    await db?.drop();
  });

  it('two bots sharing one database: the budget and the cap hold across them', async () => {
    db = await createTestDatabase();
    slack = await new FakeSlack().start();
    devin = await new FakeDevin().start();
    devin.latencyMs = 20;
    const env = {
      ...testEnv(slack, devin, 'unused'),
      DATABASE_URL: db.url,
      DEVIN_DAILY_SESSION_LIMIT: '3',
      DEVIN_MAX_CONCURRENT_SESSIONS: '2',
    };
    const urls: string[] = [];
    for (let i = 0; i < 2; i++) {
      const bot = createPostmortemBot(testConfig(env), {
        logger: createLogger('info', new LogCapture()),
        botIdentity: { botId: 'BBOT0001', botUserId: 'UBOT0001', teamId: 'T0001', enterpriseId: undefined },
      });
      bots.push(bot);
      const server = await bot.start(0);
      urls.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    }
    const [a, b] = bots as [PostmortemBot, PostmortemBot];
    // Six P1s at once, each to both replicas (a redelivery landing on the other one).
    await Promise.all([1, 2, 3, 4, 5, 6].flatMap((n) => urls.map((url) => postPagerDuty(url, p1(n)))));
    const settle = async () => {
      await Promise.all(bots.map((bot) => bot.jobs.settled()));
      await Promise.all(bots.map((bot) => bot.jobs.settled()));
    };
    const states = async () => {
      const runs = await a.store.recentRuns(100);
      const counts: Record<string, number> = {};
      for (const r of runs) counts[r.state] = (counts[r.state] ?? 0) + 1;
      return counts;
    };
    await waitFor(async () => (await a.store.recentRuns(100)).length === 6, 'six runs');
    await waitFor(() => devin?.createRequests.length === 2, 'two sessions');
    await settle();
    expect(await states()).toEqual({ started: 2, queued: 1, awaiting_approval: 3 });
    expect(devin.createRequests).toHaveLength(2);

    // The sessions finish; both replicas tick at once: the waiting one starts, once.
    for (const s of devin.sessions) devin.update(s.session_id, { status_detail: 'finished' });
    await Promise.all([a.follower.tick(), b.follower.tick()]);
    await waitFor(() => devin?.createRequests.length === 3, 'the waiting session');
    await settle();
    expect(await states()).toEqual({ finished: 2, started: 1, awaiting_approval: 3 });
    expect(devin.createRequests).toHaveLength(3);
  });
});
