import { afterEach, describe, expect, it } from 'vitest';
import { purgeJob } from '../../src/postmortems/retention.js';
import {
  buttonClick,
  type Harness,
  postPagerDuty,
  postSlackInteraction,
  postSlashCommand,
  resolvedEvent,
  startHarness,
  waitFor,
} from '../helpers/harness.js';

/** Who may spend (start, approve, retry, run again, stop) and who may see what, at the HTTP boundary. */

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const responseTexts = () => h.slack.responses.map((r) => String(r.body.text));
async function response(n: number): Promise<string> {
  await waitFor(() => h.slack.responses.length >= n, `${n} response(s) via response_url`);
  return String(h.slack.responses[n - 1]?.body.text);
}
const runs = async () =>
  (await h.bot.store.recentRuns(100)).map((r) => ({ incident: r.incidentId, state: r.state }));

describe('people outside the organisation, and guests', () => {
  it('may not approve or open the modal, even with everyone allowed; nothing changes', async () => {
    h = await startHarness();
    h.slack.users.set('UGUEST01', { name: 'guest', is_restricted: true });
    h.slack.users.set('USINGLE1', { name: 'single', is_ultra_restricted: true });
    h.slack.users.set('UEXTERN1', { name: 'partner', team_id: 'TPARTNER1' });
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P3' }));
    const card = await waitFor(() => [...h.slack.messages.values()][0], 'the approval message');

    for (const user of ['UGUEST01', 'USINGLE1', 'UEXTERN1']) {
      await postSlackInteraction(h.url, buttonClick(h.slack, card, 'postmortem_approve', user));
    }
    await postSlashCommand(h, '', { userId: 'UEXTERN1' });
    await waitFor(() => h.slack.responses.length === 4, 'four refusals');
    const [guest, single, partner, modal] = responseTexts();
    expect(guest).toMatch(/^Guests cannot start or decide postmortems unless an admin lists them by user ID/);
    expect(single).toBe(guest);
    expect(partner).toMatch(/^People from outside this workspace’s organisation \(Slack Connect\) cannot/);
    expect(modal).toBe(partner);
    expect(h.slack.callsOf('views.open')).toHaveLength(0);
    expect(await runs()).toEqual([{ incident: 'Q2K8TBZ1L3KJ7M', state: 'awaiting_approval' }]);
    expect(h.devin.createRequests).toHaveLength(0);

    // A member of the workspace may (SLACK_APPROVERS is unset).
    await postSlackInteraction(h.url, buttonClick(h.slack, card, 'postmortem_approve', 'UMEMBER1'));
    await waitFor(() => h.devin.sessions.length === 1, 'the session');
  });

  it('may when an admin lists them by user ID', async () => {
    h = await startHarness({ env: { SLACK_APPROVERS: 'UGUEST01,UEXTERN1' } });
    h.slack.users.set('UGUEST01', { name: 'guest', is_restricted: true });
    h.slack.users.set('UEXTERN1', { name: 'partner', team_id: 'TPARTNER1' });
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P3' }));
    const card = await waitFor(() => [...h.slack.messages.values()][0], 'the approval message');
    await postSlackInteraction(h.url, buttonClick(h.slack, card, 'postmortem_approve', 'UEXTERN1'));
    await waitFor(() => h.devin.sessions.length === 1, 'the session');
    await waitFor(async () => (await runs())[0]?.state === 'started', 'the run to start');
    expect((await h.bot.store.recentRuns(1))[0]?.decidedBy).toBe('UEXTERN1');
  });
});

describe('/postmortem status', () => {
  it('shows a channel its own runs; other channels’ runs only to approvers', async () => {
    h = await startHarness({ env: { SLACK_APPROVERS: 'UALICE01' } });
    h.pagerduty.addIncident({ id: 'PPAYMNT1', incident_number: 900, title: 'Payments down' });
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P3' }));
    await postSlashCommand(h, 'PPAYMNT1', { userId: 'UALICE01', channelId: 'CPAYMENTS1' });
    await waitFor(async () => (await runs()).length === 2, 'two runs in two channels');

    const bob = { userId: 'UBOB0001', channelId: 'CDEFAULT01' };
    await postSlashCommand(h, 'status', bob);
    const here = await response(2);
    expect(here).toMatch(/^Recent postmortem runs in this channel:\n/);
    expect(here).toContain('Checkout API p99 latency above 2s');
    expect(here).not.toContain('Payments down');

    await postSlashCommand(h, 'status all', bob);
    expect(await response(3)).toBe(
      'Only postmortem approvers can do this (<@UALICE01>). Nothing was changed; ask one of them.',
    );

    await postSlashCommand(h, 'status PPAYMNT1', bob);
    expect(await response(4)).toBe(
      'No postmortem runs for incident PPAYMNT1 in this channel.\n1 more run of this incident was reported in other channels; approvers can see it here.',
    );

    const alice = { userId: 'UALICE01', channelId: 'CDEFAULT01' };
    await postSlashCommand(h, 'status PPAYMNT1', alice);
    expect(await response(5)).toMatch(
      /^Postmortem runs for <https:\/\/acme\.pagerduty\.com\/incidents\/PPAYMNT1\|#900> Payments down/,
    );
    await postSlashCommand(h, 'status all', alice);
    const all = await response(6);
    expect(all).toMatch(/^Recent postmortem runs, all channels:\n/);
    expect(all).toContain('Payments down');
    expect(all).toContain('Checkout API p99 latency above 2s');
  });
});

describe('/postmortem <incident> when PagerDuty answers garbage', () => {
  it('tells the person, instead of leaving “Looking up incident…” forever', async () => {
    h = await startHarness();
    h.pagerduty.garbled.set('/incidents/PGARBLE1', {
      contentType: 'text/html',
      body: '<html>Bad gateway</html>',
    });
    h.pagerduty.garbled.set('/incidents/PSHAPE01', {
      contentType: 'application/json',
      body: JSON.stringify({ incident: { id: 7, title: ['not', 'a', 'string'] } }),
    });
    await postSlashCommand(h, 'PGARBLE1');
    await postSlashCommand(h, 'PSHAPE01');
    for (const n of [1, 2]) {
      expect(await response(n)).toBe(
        'PagerDuty answered with something the bot could not read; please try again shortly, and tell an admin if it keeps happening.',
      );
    }
    expect(await runs()).toEqual([]);
  });
});

describe('retention (DATA_RETENTION)', () => {
  const DAY = 86_400_000;

  it('ignores a replayed event older than the retention period, and purges what has expired', async () => {
    h = await startHarness({ env: { DATA_RETENTION: '30d' } });
    const old = resolvedEvent({
      eventId: 'e-old',
      incidentId: 'POLDONE1',
      occurredAt: new Date(Date.now() - 31 * DAY).toISOString(),
    });
    const replay = await postPagerDuty(h.url, old);
    expect(replay.status).toBe(200);
    expect(await replay.json()).toEqual({ status: 'ignored' });
    expect(await h.bot.store.getEvent('e-old')).toBeUndefined();

    const fresh = resolvedEvent({ priority: 'P1', occurredAt: new Date().toISOString() });
    expect((await postPagerDuty(h.url, fresh)).status).toBe(202);
    await waitFor(async () => (await runs())[0]?.state === 'started', 'the run');
    const run = (await h.bot.store.recentRuns(1))[0];
    expect(run?.evidence).not.toBeNull();
    const eventId = fresh.event.id as string;
    expect(await h.bot.store.getEvent(eventId)).toBeDefined();

    // 31 days later the daily purge removes the event and the run's evidence; the run stays.
    h.clock.advance(31 * DAY);
    await h.bot.store.enqueueJob(purgeJob());
    await waitFor(async () => (await h.bot.store.getEvent(eventId)) === undefined, 'the event to be purged');
    await waitFor(
      async () => (await h.bot.store.getRun(run?.id ?? ''))?.evidence === null,
      'the evidence purged',
    );
    expect(await runs()).toEqual([{ incident: 'Q2K8TBZ1L3KJ7M', state: 'started' }]);
    expect(h.logs.text).toContain('expired data deleted');
  });
});
