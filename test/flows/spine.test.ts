import { afterEach, describe, expect, it } from 'vitest';
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

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const approvalMessage = (harness: Harness) =>
  waitFor(
    () =>
      [...harness.slack.messages.values()].find((m) =>
        JSON.stringify(m.blocks).includes('postmortem_approve'),
      ),
    'the approval message',
  );

describe('PagerDuty → Slack approval → Devin, end to end', () => {
  it('asks first for a P3, then approve starts exactly one session and updates the message with its link', async () => {
    h = await startHarness();
    const res = await postPagerDuty(h.url, resolvedEvent({ priority: 'P3' }));
    expect(res.status).toBe(202);

    const message = await approvalMessage(h);
    expect(message.channel).toBe('CDEFAULT01');
    const post = h.slack.callsOf('chat.postMessage')[0];
    const blocksJson = JSON.stringify(post?.args.blocks);
    expect(blocksJson).toContain('Checkout API p99 latency above 2s');
    expect(blocksJson).toContain('Checkout API');
    expect(blocksJson).toContain('P3');
    expect(blocksJson).toContain('1h 25m');
    expect(blocksJson).toContain('Ada Lovelace');
    expect(blocksJson).toContain(
      '<https://acme.pagerduty.com/incidents/Q2K8TBZ1L3KJ7M|Incident #4711 resolved>',
    );
    expect(blocksJson).toContain('postmortem_skip');
    expect(h.devin.createRequests).toHaveLength(0);

    const click = await postSlackInteraction(
      h.url,
      buttonClick(h.slack, message, 'postmortem_approve', 'UALICE01'),
    );
    expect(click.status).toBe(200);

    const session = await waitFor(() => h.devin.sessions[0], 'the Devin session');
    await waitFor(() => contextText(message).includes(session.url), 'the message to show the session link');
    expect(contextText(message)).toContain('Approved by <@UALICE01>');
    expect(JSON.stringify(message.blocks)).not.toContain('postmortem_approve');

    expect(h.devin.createRequests).toHaveLength(1);
    const body = h.devin.createRequests[0] as any;
    expect(body.title).toBe('Postmortem: #4711 Checkout API p99 latency above 2s');
    expect(body.tags.slice(0, 3)).toEqual([
      'pagerduty-postmortem',
      'service:Checkout API',
      'incident:Q2K8TBZ1L3KJ7M',
    ]);
    expect(body.tags[3]).toMatch(/^pm-run-[0-9a-f-]{36}$/);
    expect(body.prompt).toContain('"title": "Checkout API p99 latency above 2s"');
    expect(body.prompt).toContain('"incident_url": "https://acme.pagerduty.com/incidents/Q2K8TBZ1L3KJ7M"');
    expect(body.prompt).toContain('"created": "2024-03-05T09:17:03Z"');
    expect(body.prompt).toContain('"resolved": "2024-03-05T10:42:11.523Z"');
    expect(body.prompt).toContain('docs/postmortems/');
    expect(body).not.toHaveProperty('playbook_id');
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(1);
  });

  it('starts a P1 by itself and posts that it started, with the session link', async () => {
    h = await startHarness({
      env: { DEVIN_PLAYBOOK_ID: 'playbook-abc', DEVIN_REPOS: 'acme/checkout,acme/infra' },
    });
    expect((await postPagerDuty(h.url, resolvedEvent({ priority: 'P1' }))).status).toBe(202);

    const session = await waitFor(() => h.devin.sessions[0], 'the Devin session');
    const message = await waitFor(
      () => [...h.slack.messages.values()].find((m) => contextText(m).includes(session.url)),
      'the started message',
    );
    expect(contextText(message)).toContain('Started automatically (priority P1).');
    expect(JSON.stringify(message.blocks)).not.toContain('postmortem_approve');
    expect(h.devin.createRequests[0]).toMatchObject({
      playbook_id: 'playbook-abc',
      repos: ['acme/checkout', 'acme/infra'],
    });
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(1);
  });

  it('skip replaces the buttons with who skipped and starts nothing', async () => {
    h = await startHarness();
    await postPagerDuty(h.url, resolvedEvent({ priority: null }));
    const message = await approvalMessage(h);
    expect(JSON.stringify(message.blocks)).toContain('*Priority*\\nnone');

    await postSlackInteraction(h.url, buttonClick(h.slack, message, 'postmortem_skip', 'UBOB0001'));
    await waitFor(() => contextText(message).includes('skipped by <@UBOB0001>'), 'the skipped message');
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(0);
    expect(JSON.stringify(message.blocks)).not.toContain('postmortem_approve');
  });

  it('four deliveries of one event make one message and one session', async () => {
    h = await startHarness();
    const body = resolvedEvent({ priority: 'P2' });
    const statuses = await Promise.all(
      [1, 2, 3, 4].map(() => postPagerDuty(h.url, body).then((r) => r.status)),
    );
    expect(statuses.sort()).toEqual([200, 200, 200, 202]);
    await waitFor(
      () => h.slack.callsOf('chat.postMessage').length === 1 && h.devin.sessions.length === 1,
      'the run',
    );
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(1);
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(1);
  });

  it('a second resolve of the same incident (reopened, resolved again) does not start another postmortem', async () => {
    h = await startHarness();
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P1' }));
    await waitFor(() => h.devin.sessions.length === 1, 'the first session');
    const again = resolvedEvent({
      priority: 'P1',
      eventId: 'second-resolve',
      occurredAt: '2024-03-05T12:00:00Z',
    });
    expect((await postPagerDuty(h.url, again)).status).toBe(202);
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(1);
  });

  it('two approve clicks at once start one session; the slower click is told privately', async () => {
    h = await startHarness();
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P4' }));
    const message = await approvalMessage(h);
    const clicks = await Promise.all([
      postSlackInteraction(h.url, buttonClick(h.slack, message, 'postmortem_approve', 'UALICE01')),
      postSlackInteraction(h.url, buttonClick(h.slack, message, 'postmortem_approve', 'UBOB0001')),
    ]);
    expect(clicks.map((c) => c.status)).toEqual([200, 200]);
    await waitFor(
      () => h.devin.sessions.length === 1 && h.slack.responses.length === 1,
      'one session and one note',
    );
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(1);
    expect(h.slack.responses[0]?.body).toMatchObject({ response_type: 'ephemeral', replace_original: false });
    expect(String(h.slack.responses[0]?.body.text)).toMatch(/already started by <@U(ALICE01|BOB0001)>/);
  });

  it('Devin answering 503 is retried and makes one session', async () => {
    h = await startHarness();
    h.devin.nextCreates({ kind: 'status', status: 503 }, { kind: 'status', status: 503 });
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P1' }));
    const session = await waitFor(() => h.devin.sessions[0], 'the session after recovery');
    await waitFor(
      () => [...h.slack.messages.values()].some((m) => contextText(m).includes(session.url)),
      'the started message',
    );
    expect(h.devin.createRequests).toHaveLength(3);
    expect(h.devin.sessions).toHaveLength(1);
    // Each retry after an unknown outcome looked the run's tag up first.
    expect(h.devin.listRequests.length).toBeGreaterThanOrEqual(2);
  });

  it('a create that timed out but did happen is found by its tag, not created again', async () => {
    h = await startHarness({
      configure: (c) => {
        c.tuning.devinTimeoutMs = 300;
      },
    });
    h.devin.nextCreates({ kind: 'create-then-delay', delayMs: 1000 });
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P1' }));
    const session = await waitFor(() => h.devin.sessions[0], 'the session');
    await waitFor(
      () => [...h.slack.messages.values()].some((m) => contextText(m).includes(session.url)),
      'the started message with the session created by the timed-out call',
    );
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(1);
    expect(h.devin.sessions).toHaveLength(1);
    expect(h.devin.listRequests[0]).toContain(`tags=${(h.devin.createRequests[0] as any).tags[3]}`);
  });

  it('a slow create that Devin lists only later is waited for, not created twice', async () => {
    // The trap: the client gives up after 300 ms, Devin answers after 1 s and lists the session by its tag
    // only 1.5 s after that. A lookup right after the timeout finds nothing.
    h = await startHarness({
      configure: (c) => {
        c.tuning.devinTimeoutMs = 300;
        c.devin.reconcileWindowMs = 4000;
      },
    });
    h.devin.listVisibilityDelayMs = 1500;
    h.devin.nextCreates({ kind: 'create-then-delay', delayMs: 1000 });
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P1' }));
    const session = await waitFor(() => h.devin.sessions[0], 'the session');
    await waitFor(
      () => [...h.slack.messages.values()].some((m) => contextText(m).includes(session.url)),
      'the started message with the session created by the timed-out call',
      8000,
    );
    expect(h.devin.listRequests.length).toBeGreaterThanOrEqual(2);
    expect(h.devin.createRequests).toHaveLength(1);
  });

  it('Devin refusing the request (4xx) fails the run and says so in Slack', async () => {
    h = await startHarness();
    h.devin.nextCreates({
      kind: 'status',
      status: 403,
      body: { type: 'about:blank', title: 'Forbidden', status: 403, detail: 'Service user lacks permission' },
    });
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P1' }));
    const message = await waitFor(
      () => [...h.slack.messages.values()].find((m) => contextText(m).includes('could not be started')),
      'the failure message',
    );
    expect(contextText(message)).toContain('Devin refused the request (403: Service user lacks permission)');
    expect(h.devin.createRequests).toHaveLength(1);
  });

  it('a job queued before a restart runs after it', async () => {
    h = await startHarness();
    await h.bot.jobs.stop();
    expect((await postPagerDuty(h.url, resolvedEvent({ priority: 'P1' }))).status).toBe(202);
    await h.settled();
    expect(h.devin.createRequests).toHaveLength(0);
    expect(await h.bot.store.listJobs()).toEqual([
      expect.objectContaining({ kind: 'process_event', state: 'queued', attempts: 0 }),
    ]);
    await h.restart();
    await waitFor(() => h.devin.sessions.length === 1, 'the session after the restart');
    await waitFor(() => h.slack.callsOf('chat.postMessage').length === 1, 'the message after the restart');
  });

  it('routes by service to its channel and auto-start set', async () => {
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const file = join(mkdtempSync(join(tmpdir(), 'routing-')), 'routing.json');
    writeFileSync(
      file,
      JSON.stringify({
        services: { 'Checkout API': { channel: 'CPAYMENTS1', auto_start_priorities: ['P3'] } },
      }),
    );
    h = await startHarness({ env: { ROUTING_FILE: file } });
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P3' }));
    await waitFor(() => h.devin.sessions.length === 1, 'the auto-started session');
    const post = await waitFor(() => h.slack.callsOf('chat.postMessage')[0], 'the message');
    expect(post.args.channel).toBe('CPAYMENTS1');
  });

  it('accepts ping and unknown event types without acting on them', async () => {
    h = await startHarness();
    expect((await postPagerDuty(h.url, fixture('pagerduty/pagey-ping.json'))).status).toBe(202);
    const unknown = fixture('pagerduty/incident-triggered.json');
    unknown.event.id = 'evt-unknown-type';
    unknown.event.event_type = 'incident.custom_field_values.updated';
    expect((await postPagerDuty(h.url, unknown)).status).toBe(202);
    await h.settled();
    expect(h.slack.calls).toHaveLength(0);
    expect(h.devin.createRequests).toHaveLength(0);
  });

  it('keeps priority set after the trigger: triggered (none) → priority_updated (P1) → resolved', async () => {
    h = await startHarness();
    const triggered = fixture('pagerduty/incident-triggered.json');
    await postPagerDuty(h.url, triggered);
    const updated = fixture('pagerduty/incident-triggered.json');
    updated.event.id = 'evt-priority';
    updated.event.event_type = 'incident.priority_updated';
    updated.event.occurred_at = '2024-03-05T09:20:00Z';
    updated.event.data.priority = { id: 'PPRI1', summary: 'P1', type: 'priority_reference' };
    await postPagerDuty(h.url, updated);
    // A resolved payload that omits priority entirely still uses the stored one.
    const resolved = resolvedEvent({});
    delete resolved.event.data.priority;
    await postPagerDuty(h.url, resolved);
    await waitFor(() => h.devin.sessions.length === 1, 'the auto-started session');
  });

  it('Slack rate-limiting and outages delay the message, never lose or double it', async () => {
    h = await startHarness();
    h.slack.failNext('chat.postMessage', { kind: 'ratelimit', retryAfterS: 1 });
    h.slack.failNext('chat.postMessage', { kind: 'http', status: 503 });
    const started = Date.now();
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P3' }));
    await approvalMessage(h);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(h.slack.callsOf('chat.postMessage!fault')).toHaveLength(2);
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(1);
  });

  it('falls back to the default channel when the routed channel refuses the bot', async () => {
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const file = join(mkdtempSync(join(tmpdir(), 'routing-')), 'routing.json');
    writeFileSync(file, JSON.stringify({ services: { PSVC123: { channel: 'CGONE00001' } } }));
    h = await startHarness({ env: { ROUTING_FILE: file } });
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P3' }));
    const message = await approvalMessage(h);
    expect(message.channel).toBe('CDEFAULT01');
  });

  it('never writes a secret to the logs', async () => {
    h = await startHarness();
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P1' }));
    await postPagerDuty(h.url, resolvedEvent({ eventId: 'bad' }), { secret: 'wrong' });
    await waitFor(() => h.slack.callsOf('chat.postMessage').length === 1, 'the run');
    expect(h.logs.lines.length).toBeGreaterThan(3);
    for (const secret of [
      h.env.SLACK_BOT_TOKEN,
      h.env.SLACK_SIGNING_SECRET,
      h.env.PAGERDUTY_WEBHOOK_SECRET,
      h.env.DEVIN_API_KEY,
    ]) {
      expect(h.logs.text).not.toContain(String(secret));
    }
  });
});
