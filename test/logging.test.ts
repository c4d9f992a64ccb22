import { afterEach, describe, expect, it } from 'vitest';
import { boltLogger, createLogger } from '../src/logging.js';
import {
  buttonClick,
  type Harness,
  LogCapture,
  postPagerDuty,
  postSlackInteraction,
  resolvedEvent,
  startHarness,
  waitFor,
} from './helpers/harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const parsed = (logs: LogCapture) => logs.lines.map((l) => JSON.parse(l) as Record<string, any>);

describe('logs', () => {
  it("keeps Bolt's fields as pino fields instead of flattening them into one string", () => {
    const logs = new LogCapture();
    const bolt = boltLogger(createLogger('debug', logs));
    bolt.warn('http request failed', 'connect ECONNREFUSED 127.0.0.1:1');
    bolt.debug({ team: 'T1', level: 'not pino’s', nested: { a: 1 } }, 'event received');
    const err = Object.assign(new Error('An API error occurred: channel_not_found'), {
      code: 'slack_webapi_platform_error',
      data: { ok: false, error: 'channel_not_found' },
    });
    bolt.error('listener failed', err);
    const [warn, debug, error] = parsed(logs);
    expect(warn).toMatchObject({
      level: 40,
      component: 'bolt',
      msg: 'http request failed connect ECONNREFUSED 127.0.0.1:1',
    });
    expect(debug).toMatchObject({
      level: 20,
      component: 'bolt',
      msg: 'event received',
      team: 'T1',
      bolt_level: 'not pino’s',
      nested: { a: 1 },
    });
    expect(error).toMatchObject({
      level: 50,
      msg: 'listener failed',
      err: {
        message: 'An API error occurred: channel_not_found',
        code: 'slack_webapi_platform_error',
        slackError: 'channel_not_found',
      },
    });
    expect(logs.text).not.toContain('[object Object]');
  });

  it('below LOG_LEVEL writes nothing, and tells Bolt the level', () => {
    const logs = new LogCapture();
    const bolt = boltLogger(createLogger('warn', logs));
    bolt.debug('chatty');
    bolt.info('chatty');
    expect(logs.lines).toEqual([]);
    expect(bolt.getLevel()).toBe('warn');
  });

  it('every line about a run carries its run and incident IDs, also from the job runner', async () => {
    h = await startHarness();
    const harness = h;
    // The first post fails (Slack 503): the runner logs the retry of the run's job.
    harness.slack.failNext('chat.postMessage', { kind: 'http', status: 503 });
    await postPagerDuty(harness.url, resolvedEvent({ priority: 'P3' }));
    const message = await waitFor(
      () =>
        [...harness.slack.messages.values()].find((m) =>
          JSON.stringify(m.blocks).includes('postmortem_approve'),
        ),
      'the approval message',
    );
    await postSlackInteraction(
      harness.url,
      buttonClick(harness.slack, message, 'postmortem_approve', 'UALICE01'),
    );
    const session = await waitFor(() => harness.devin.sessions[0], 'the session');
    harness.devin.update(session.session_id, { status: 'running', status_detail: 'finished' });
    await waitFor(async () => {
      await harness.bot.follower.tick();
      return (await harness.bot.store.runsForIncident('Q2K8TBZ1L3KJ7M'))[0]?.state === 'finished';
    }, 'the run to finish');

    const lines = parsed(harness.logs);
    const aboutRuns = lines.filter((l) => l.runId !== undefined);
    const messages = new Set(aboutRuns.map((l) => l.msg));
    for (const expected of [
      'postmortem run opened',
      'job will be retried',
      'postmortem run changed by a person',
      'Devin session created',
      'Devin session moved on',
    ]) {
      expect(messages, expected).toContain(expected);
    }
    for (const line of aboutRuns) {
      expect(line.incidentId, `${line.msg} carries the incident`).toBe('Q2K8TBZ1L3KJ7M');
    }
    // Bolt's own lines are there, structured.
    expect(lines.some((l) => l.component === 'bolt')).toBe(true);
  });
});
