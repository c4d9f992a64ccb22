import { afterEach, describe, expect, it } from 'vitest';
import { type Harness, postPagerDuty, resolvedEvent, startHarness, waitFor } from '../helpers/harness.js';

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const scrape = async (harness: Harness, headers: Record<string, string> = {}) => {
  const res = await fetch(`${harness.url}/metrics`, { headers });
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
};

/** The value of one sample, e.g. value(text, 'postmortem_bot_webhooks_total{outcome="accepted"}'). */
function value(text: string, sample: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? undefined : Number(line.slice(sample.length + 1));
}

describe('GET /metrics', () => {
  it('exposes process, webhook, API call, job, run, session and ACU families, moved by real work', async () => {
    h = await startHarness();
    const before = await scrape(h);
    expect(before.status).toBe(200);
    expect(before.type).toContain('text/plain');
    for (const family of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_seconds',
      'postmortem_bot_webhooks_total',
      'postmortem_bot_api_calls_total',
      'postmortem_bot_api_call_duration_seconds',
      'postmortem_bot_jobs',
      'postmortem_bot_oldest_queued_job_age_seconds',
      'postmortem_bot_runs',
      'postmortem_bot_devin_sessions_created_total',
      'postmortem_bot_devin_acus_consumed',
      'postmortem_bot_store_up',
    ]) {
      expect(before.text, family).toContain(`# TYPE ${family} `);
    }
    expect(value(before.text, 'postmortem_bot_webhooks_total{outcome="accepted"}')).toBe(0);
    expect(value(before.text, 'postmortem_bot_runs{state="awaiting_approval"}')).toBe(0);
    expect(value(before.text, 'postmortem_bot_store_up')).toBe(1);

    // A P3 asks first: one accepted webhook, one approval message; a redelivery is a duplicate.
    const body = resolvedEvent({ priority: 'P3' });
    expect((await postPagerDuty(h.url, body)).status).toBe(202);
    expect((await postPagerDuty(h.url, body)).status).toBe(200);
    expect((await postPagerDuty(h.url, body, { secret: 'not-the-secret' })).status).toBe(401);
    expect((await postPagerDuty(h.url, '{"not":"an envelope"}')).status).toBe(400);
    await waitFor(() => h.slack.callsOf('chat.postMessage').length === 1, 'the approval message');
    // A P1 starts by itself: a Devin session.
    const p1 = resolvedEvent({ priority: 'P1', eventId: 'evt-p1', incidentId: 'QP1', number: 9001 });
    expect((await postPagerDuty(h.url, p1)).status).toBe(202);
    const session = await waitFor(() => h.devin.sessions[0], 'the P1 session');
    h.devin.update(session.session_id, { status: 'running', status_detail: 'working', acus_consumed: 2.5 });
    await waitFor(async () => {
      await h.bot.follower.tick();
      return (await h.bot.store.getRun((await h.bot.store.runsForIncident('QP1'))[0]?.id ?? ''))
        ?.acusConsumed;
    }, 'the ACUs to be polled');
    // The P1's own message follows its session (a queued job): let the queue settle before scraping.
    await h.settled();

    const after = (await scrape(h)).text;
    expect(value(after, 'postmortem_bot_webhooks_total{outcome="accepted"}')).toBe(2);
    expect(value(after, 'postmortem_bot_webhooks_total{outcome="duplicate"}')).toBe(1);
    expect(value(after, 'postmortem_bot_webhooks_total{outcome="bad_signature"}')).toBe(1);
    expect(value(after, 'postmortem_bot_webhooks_total{outcome="invalid"}')).toBe(1);
    expect(
      value(after, 'postmortem_bot_api_calls_total{api="slack",method="chat.postMessage",outcome="ok"}'),
    ).toBeGreaterThanOrEqual(2);
    expect(
      value(after, 'postmortem_bot_api_calls_total{api="devin",method="create_session",outcome="ok"}'),
    ).toBe(1);
    expect(
      value(after, 'postmortem_bot_api_calls_total{api="devin",method="get_session",outcome="ok"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      value(after, 'postmortem_bot_api_call_duration_seconds_count{api="devin",method="create_session"}'),
    ).toBe(1);
    expect(value(after, 'postmortem_bot_devin_sessions_created_total')).toBe(1);
    expect(value(after, 'postmortem_bot_runs{state="awaiting_approval"}')).toBe(1);
    expect(value(after, 'postmortem_bot_runs{state="started"}')).toBe(1);
    expect(value(after, 'postmortem_bot_devin_acus_consumed')).toBe(2.5);
    expect(value(after, 'postmortem_bot_jobs{state="dead"}')).toBe(0);
  });

  it('counts a Slack refusal and a Devin rejection by their outcome', async () => {
    h = await startHarness();
    h.slack.failNext('chat.postMessage', { kind: 'error', error: 'channel_not_found' });
    h.devin.nextCreates({ kind: 'status', status: 403, body: { detail: 'Forbidden' } });
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P1' }));
    const slackRefused =
      'postmortem_bot_api_calls_total{api="slack",method="chat.postMessage",outcome="rejected"}';
    const devinRefused =
      'postmortem_bot_api_calls_total{api="devin",method="create_session",outcome="rejected"}';
    const text = await waitFor(async () => {
      const t = (await scrape(h)).text;
      return value(t, slackRefused) && value(t, devinRefused) ? t : undefined;
    }, 'both refusals to be counted');
    expect(value(text, slackRefused)).toBe(1);
    expect(value(text, devinRefused)).toBe(1);
    expect(value(text, 'postmortem_bot_devin_sessions_created_total')).toBe(0);
  });

  it('with METRICS_TOKEN, answers only the bearer of the token', async () => {
    const token = 'metrics-token-0123456789abcdef';
    h = await startHarness({ env: { METRICS_TOKEN: token } });
    const none = await scrape(h);
    expect(none.status).toBe(401);
    expect(none.text).not.toContain('postmortem_bot_');
    expect((await scrape(h, { authorization: 'Bearer wrong-token' })).status).toBe(401);
    expect((await scrape(h, { authorization: `Bearer ${token}x` })).status).toBe(401);
    expect((await scrape(h, { authorization: token })).status).toBe(401);
    const ok = await scrape(h, { authorization: `Bearer ${token}` });
    expect(ok.status).toBe(200);
    expect(ok.text).toContain('postmortem_bot_webhooks_total');
    expect(h.logs.text).not.toContain(token);
  });
});
