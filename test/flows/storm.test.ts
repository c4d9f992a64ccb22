import { afterEach, describe, expect, it } from 'vitest';
import {
  buttonClick,
  contextText,
  type Harness,
  postPagerDuty,
  postSlackInteraction,
  postSlashCommand,
  startHarness,
} from '../helpers/harness.js';
import { stormEvent, stormIncidentId } from '../helpers/storm.js';

/**
 * Storms (STORM_WINDOW): the resolved incidents of one service within the window get one run, one Slack
 * message updated in place and at most one Devin session, whose prompt and follow-up messages cover them
 * all. Driven over HTTP, with Slack, Devin and PagerDuty stood in at their HTTP boundary.
 */

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const incidentId = stormIncidentId;

/** Everything one session was told: its prompt and the messages sent to it. */
function toldSession(harness: Harness, sessionId: string): string {
  const session = harness.devin.sessions.find((s) => s.session_id === sessionId);
  const index = harness.devin.sessions.indexOf(session as (typeof harness.devin.sessions)[number]);
  const prompt = String((harness.devin.createRequests[index] as { prompt?: string } | undefined)?.prompt);
  const messages = harness.devin.messages.filter((m) => m.sessionId === sessionId).map((m) => m.message);
  return [prompt, ...messages].join('\n');
}

const covered = (text: string, ids: readonly string[]) => ids.filter((id) => text.includes(`"${id}"`));

const botMessages = (harness: Harness) => [...harness.slack.messages.values()];

describe('storms: one postmortem per outage', () => {
  it('40 P1 incidents of one service resolved within seconds: one session told all 40, one Slack message updated in place', async () => {
    h = await startHarness({ env: { STORM_WINDOW: '10m' } });
    for (let n = 0; n < 40; n++) h.pagerduty.addIncident({ id: incidentId(n), incident_number: 9000 + n });
    const ids = Array.from({ length: 40 }, (_, n) => incidentId(n));
    // When each incident's resolution was answered, and when each message reached the session.
    const answeredAt = new Map<string, number>();
    const toldAt = new Map<string, number>();
    h.devin.events.on('session', () => {
      for (const m of h.devin.messages) {
        for (const id of covered(m.message, ids)) if (!toldAt.has(id)) toldAt.set(id, Date.now());
      }
    });
    // The first resolves alone; the rest arrive at once, as a storm does.
    expect((await postPagerDuty(h.url, stormEvent(0))).status).toBe(202);
    answeredAt.set(ids[0] as string, Date.now());
    await Promise.all(
      ids.slice(1).map(async (id, i) => {
        expect((await postPagerDuty(h.url, stormEvent(i + 1))).status).toBe(202);
        answeredAt.set(id, Date.now());
      }),
    );
    await h.settled(60_000);

    expect(h.devin.createRequests).toHaveLength(1);
    const session = h.devin.sessions[0];
    if (!session) throw new Error('no session');
    const createdAt = Date.now();
    expect(covered(toldSession(h, session.session_id), ids).sort()).toEqual([...ids].sort());
    // Each incident is sent once: in the prompt or in exactly one message.
    const prompt = String((h.devin.createRequests[0] as { prompt: string }).prompt);
    const messageIds = h.devin.messages.flatMap((m) => covered(m.message, ids));
    expect(new Set(messageIds).size).toBe(messageIds.length);
    expect(messageIds.filter((id) => prompt.includes(`"${id}"`))).toEqual([]);
    expect(prompt.length).toBeLessThanOrEqual(30_000);
    for (const m of h.devin.messages) expect(m.message.length).toBeLessThanOrEqual(30_000);
    // Each incident sent in a message reached the session within a minute of its webhook being answered.
    for (const [id, at] of toldAt) {
      expect(at - (answeredAt.get(id) ?? createdAt), id).toBeLessThan(60_000);
    }
    // Fenced as data: every follow-up message has its own marker, opened and closed once.
    for (const m of h.devin.messages) {
      const marker = /<<<(INCIDENT_DATA_[0-9a-f]{32})/.exec(m.message)?.[1];
      expect(marker).toBeDefined();
      expect(m.message.split(`<<<${marker}`)).toHaveLength(2);
      expect(m.message.split(`${marker}>>>`)).toHaveLength(2);
    }

    // One message in the channel for the group, updated in place as incidents joined.
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(1);
    const messages = botMessages(h);
    expect(messages).toHaveLength(1);
    const message = messages[0];
    if (!message) throw new Error('no message');
    expect(h.slack.callsOf('chat.update').every((c) => c.args.ts === message.ts)).toBe(true);
    const text = JSON.stringify(message.blocks);
    expect(text).toContain('40 incidents on Checkout API resolved 14:00–14:00 UTC');
    expect(text).toContain(`<https://acme.pagerduty.com/incidents/${incidentId(0)}|#9000>`);
    expect(text).toContain('…and 25 more');
    expect(contextText(message)).toContain(session.url);
    expect(contextText(message)).toContain('Started automatically (priority P1).');
  }, 180_000);

  it('three P1 incidents of three services: three groups, three sessions, three messages', async () => {
    h = await startHarness({ env: { STORM_WINDOW: '10m' } });
    await Promise.all(
      [0, 1, 2].map((n) =>
        postPagerDuty(h.url, stormEvent(n, { serviceId: `PSVC${n}`, serviceName: `Service ${n}` })),
      ),
    );
    await h.settled(30_000);
    expect(h.devin.createRequests).toHaveLength(3);
    const prompts = h.devin.createRequests.map((r) => String((r as { prompt: string }).prompt));
    for (const n of [0, 1, 2]) {
      // Each session is told about its own incident only.
      const own = prompts.filter((p) => p.includes(`"${incidentId(n)}"`));
      expect(own).toHaveLength(1);
      expect(own[0]).not.toContain('resolved within minutes of');
    }
    expect(h.devin.messages).toHaveLength(0);
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(3);
  });

  it('STORM_WINDOW=0: one run and one session per incident, as without grouping', async () => {
    h = await startHarness({ env: { STORM_WINDOW: '0' } });
    for (const n of [0, 1, 2]) await postPagerDuty(h.url, stormEvent(n));
    await h.settled(30_000);
    expect(h.devin.createRequests).toHaveLength(3);
    expect(h.devin.messages).toHaveLength(0);
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(3);
    expect(JSON.stringify(botMessages(h).map((m) => m.blocks))).not.toContain('incidents on');
  });

  it('asks once for a group of P3s; a redelivered resolution does not join twice; Approve starts one session told every incident', async () => {
    h = await startHarness({ env: { STORM_WINDOW: '10m' } });
    await postPagerDuty(h.url, stormEvent(0, { priority: 'P3', title: 'Checkout <!channel> down' }));
    await h.settled();
    await postPagerDuty(h.url, stormEvent(1, { priority: 'P3' }));
    // PagerDuty redelivers the same event, and sends the incident's resolve again under a new event ID.
    await postPagerDuty(h.url, stormEvent(1, { priority: 'P3' }));
    const again = stormEvent(1, { priority: 'P3' });
    again.event.id = 'storm-resolve-1-again';
    await postPagerDuty(h.url, again);
    await postPagerDuty(h.url, stormEvent(2, { priority: 'P4' }));
    await h.settled();

    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(1);
    const message = botMessages(h)[0];
    if (!message) throw new Error('no message');
    const text = JSON.stringify(message.blocks);
    expect(text).toContain('3 incidents on Checkout API resolved 14:00–14:00 UTC');
    expect(text).toContain('Should Devin investigate these 3 incidents and write one postmortem for them?');
    expect(text).toContain('Checkout &lt;!channel&gt; down');
    expect(text).not.toContain('<!channel>');
    expect(text).toContain('P3, P4');
    expect(h.devin.createRequests).toHaveLength(0);

    // One decision for the group; a double click changes nothing more.
    await Promise.all([
      postSlackInteraction(h.url, buttonClick(h.slack, message, 'postmortem_approve', 'UALICE01')),
      postSlackInteraction(h.url, buttonClick(h.slack, message, 'postmortem_approve', 'UBOB0001')),
    ]);
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(1);
    const prompt = String((h.devin.createRequests[0] as { prompt: string }).prompt);
    expect(covered(prompt, [0, 1, 2].map(incidentId))).toHaveLength(3);
    expect(prompt).toContain('one of 3 incidents of the same service');
    expect(prompt.split(`"${incidentId(1)}"`)).toHaveLength(2);
    expect(h.devin.messages).toHaveLength(0);
    expect(contextText(message)).toMatch(/Approved by <@U(ALICE01|BOB0001)>/);

    // A fourth incident joins the running session: sent to it, and the message counts it.
    await postPagerDuty(h.url, stormEvent(3, { priority: 'P3' }));
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(1);
    expect(h.devin.messages).toHaveLength(1);
    expect(covered(h.devin.messages[0]?.message ?? '', [0, 1, 2, 3].map(incidentId))).toEqual([
      incidentId(3),
    ]);
    expect(JSON.stringify(message.blocks)).toContain('4 incidents on Checkout API');
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(1);
  });

  it('a P1 joining a group that waits for approval starts it by policy; Skip decides a group once', async () => {
    h = await startHarness({ env: { STORM_WINDOW: '10m' } });
    await postPagerDuty(h.url, stormEvent(0, { priority: 'P3' }));
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(0);
    await postPagerDuty(h.url, stormEvent(1, { priority: 'P1' }));
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(1);
    const prompt = String((h.devin.createRequests[0] as { prompt: string }).prompt);
    expect(covered(prompt, [incidentId(0), incidentId(1)])).toHaveLength(2);
    const message = botMessages(h)[0];
    if (!message) throw new Error('no message');
    expect(contextText(message)).toContain(
      'Started automatically (an incident with an auto-start priority joined the group).',
    );
    expect(JSON.stringify(message.blocks)).not.toContain('postmortem_approve');

    // Another service's group is skipped; a P3 joining it later stays skipped with it…
    const other = { serviceId: 'PSVCB', serviceName: 'Billing' };
    await postPagerDuty(h.url, stormEvent(10, { priority: 'P3', ...other }));
    await h.settled();
    const billing = botMessages(h).find((m) => JSON.stringify(m.blocks).includes('Billing'));
    if (!billing) throw new Error('no Billing message');
    await postSlackInteraction(h.url, buttonClick(h.slack, billing, 'postmortem_skip', 'UALICE01'));
    await h.settled();
    await postPagerDuty(h.url, stormEvent(11, { priority: 'P3', ...other }));
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(1);
    expect(JSON.stringify(billing.blocks)).toContain('2 incidents on Billing');
    expect(contextText(billing)).toContain('Postmortem skipped by <@UALICE01>');
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(2);
    // …but a P1 is not folded into a skipped group: it opens a group of its own, which policy starts.
    await postPagerDuty(h.url, stormEvent(12, { priority: 'P1', ...other }));
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(2);
    const own = String((h.devin.createRequests[1] as { prompt: string }).prompt);
    expect(covered(own, [10, 11, 12].map(incidentId))).toEqual([incidentId(12)]);
    expect(JSON.stringify(billing.blocks)).toContain('2 incidents on Billing');
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(3);
    const started = botMessages(h).find((m) =>
      contextText(m).includes('Started automatically (priority P1)'),
    );
    expect(JSON.stringify(started?.blocks)).toContain(`#${9012}`);
  });

  it('/postmortem <incident of a group> is an explicit new run for that one incident', async () => {
    h = await startHarness({ env: { STORM_WINDOW: '10m' } });
    h.pagerduty.addIncident({
      id: incidentId(1),
      incident_number: 9001,
      title: 'Checkout API 5xx on host 1',
    });
    await postPagerDuty(h.url, stormEvent(0));
    await h.settled();
    await postPagerDuty(h.url, stormEvent(1));
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(1);
    expect(h.devin.messages).toHaveLength(1);

    await postSlashCommand(h, incidentId(1));
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(2);
    const own = String((h.devin.createRequests[1] as { prompt: string }).prompt);
    expect(own).toContain(`"${incidentId(1)}"`);
    expect(own).not.toContain(`"${incidentId(0)}"`);
    expect(own).not.toContain('resolved within minutes of');
    const runs = await h.bot.store.recentRuns(10);
    expect(runs.map((r) => [r.incidentId, r.trigger]).sort()).toEqual([
      [incidentId(0), 'auto'],
      [incidentId(1), 'manual'],
    ]);
    // The group keeps both incidents; its session was not told anything more.
    expect(h.devin.messages).toHaveLength(1);
  });

  it('notes the finished postmortem on every incident of the group (PAGERDUTY_FROM_EMAIL)', async () => {
    h = await startHarness({ env: { STORM_WINDOW: '10m', PAGERDUTY_FROM_EMAIL: 'oncall-bot@acme.example' } });
    for (const n of [0, 1, 2]) h.pagerduty.addIncident({ id: incidentId(n), incident_number: 9000 + n });
    for (const n of [0, 1, 2]) await postPagerDuty(h.url, stormEvent(n));
    await h.settled();
    const session = h.devin.sessions[0];
    if (!session) throw new Error('no session');
    h.devin.update(session.session_id, {
      status: 'running',
      status_detail: 'finished',
      pull_requests: [{ pr_url: 'https://github.com/acme/postmortems/pull/8', pr_state: 'open' }],
    });
    await h.bot.follower.tick();
    await h.settled();
    expect(h.pagerduty.postedNotes.map((n) => n.incidentId).sort()).toEqual([0, 1, 2].map(incidentId));
    expect(new Set(h.pagerduty.postedNotes.map((n) => n.content)).size).toBe(1);
    expect(h.pagerduty.postedNotes[0]?.content).toContain('https://github.com/acme/postmortems/pull/8');
  });

  it('a group whose session could not be created takes joiners that wait for a decision; Retry creates one session told them all', async () => {
    h = await startHarness({ env: { STORM_WINDOW: '10m' } });
    h.devin.nextCreates({ kind: 'status', status: 402, body: { detail: 'Out of ACUs' } });
    await postPagerDuty(h.url, stormEvent(0));
    await h.settled();
    expect((await h.bot.store.recentRuns(10)).map((r) => r.state)).toEqual(['start_failed']);
    await postPagerDuty(h.url, stormEvent(1, { priority: 'P3' }));
    await h.settled();
    expect(await h.bot.store.recentRuns(10)).toHaveLength(1);
    const message = botMessages(h)[0];
    if (!message) throw new Error('no message');
    expect(JSON.stringify(message.blocks)).toContain('2 incidents on Checkout API');
    // A P1 does not wait on a group whose start failed: a group of its own, started by policy.
    await postPagerDuty(h.url, stormEvent(2));
    await h.settled();
    expect(h.devin.sessions).toHaveLength(1);
    expect(
      covered(
        String((h.devin.createRequests.at(-1) as { prompt: string }).prompt),
        [0, 1, 2].map(incidentId),
      ),
    ).toEqual([incidentId(2)]);
    expect(JSON.stringify(message.blocks)).toContain('2 incidents on Checkout API');
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(2);

    await postSlackInteraction(h.url, buttonClick(h.slack, message, 'postmortem_retry', 'UALICE01'));
    await h.settled();
    expect(h.devin.sessions).toHaveLength(2);
    const prompt = String((h.devin.createRequests.at(-1) as { prompt: string }).prompt);
    expect(covered(prompt, [0, 1, 2].map(incidentId))).toEqual([incidentId(0), incidentId(1)]);
    expect(h.devin.messages).toHaveLength(0);
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(2);
  });
});
