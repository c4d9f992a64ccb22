import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { postmortemCommand } from '../../../../src/slack/listeners/commands/postmortem.js';
import { USAGE } from '../../../../src/slack/replies.js';
import { anIncident, aRun } from '../../../helpers/builders.js';
import {
  commandArgs,
  fakeService,
  type ListenerFakes,
  listenerFakes,
} from '../../../helpers/slack-listener-fakes.js';

let fakes: ListenerFakes;
beforeEach(async () => {
  fakes = await listenerFakes();
});
afterEach(async () => {
  await fakes.close();
});

const run = aRun({
  state: 'starting',
  trigger: 'manual',
  decidedBy: 'UBOB0001',
  incident: anIncident({ number: 4711, title: 'Checkout <slow>' }),
});

describe('/postmortem (no text): the ad-hoc modal', () => {
  it('acks at once, checks the person may start one, then opens the modal on the trigger, for this channel', async () => {
    const { service, calls } = fakeService(fakes, { mayStart: async () => undefined });
    await postmortemCommand(service)(
      commandArgs(fakes, { text: '  ', userId: 'UBOB0001', channelId: 'CPAYMENTS1' }),
    );
    expect(fakes.ack).toHaveBeenCalledWith();
    expect(fakes.timeline).toEqual(['ack', 'service.mayStart', 'client.views.open']);
    expect(calls.mayStart).toHaveBeenCalledWith('UBOB0001');
    const [open] = fakes.slack.callsOf('views.open');
    expect(fakes.slack.calls).toHaveLength(1);
    expect(open?.args.trigger_id).toBe('1700000000.1234.abcdef');
    expect(open?.args.view).toMatchObject({
      type: 'modal',
      callback_id: 'postmortem_adhoc',
      private_metadata: JSON.stringify({ channelId: 'CPAYMENTS1' }),
    });
    expect(fakes.respond).not.toHaveBeenCalled();
  });

  it('opens no modal for someone who may not start a postmortem, and says why', async () => {
    const { service } = fakeService(fakes, {
      mayStart: async () => ({ kind: 'not_allowed', reason: 'not_an_approver', approvers: '<@UALICE01>' }),
    });
    await postmortemCommand(service)(commandArgs(fakes, { text: '' }));
    expect(fakes.timeline).toEqual(['ack', 'service.mayStart', 'respond']);
    expect(fakes.slack.calls).toEqual([]);
    expect(fakes.respond).toHaveBeenCalledWith({
      response_type: 'ephemeral',
      text: 'Only postmortem approvers can do this (<@UALICE01>). Nothing was changed; ask one of them.',
    });
  });

  it('says privately that the form could not be opened when views.open fails, and logs why', async () => {
    fakes.slack.failNext('views.open', { kind: 'error', error: 'expired_trigger_id' });
    const { service } = fakeService(fakes, { mayStart: async () => undefined });
    await postmortemCommand(service)(commandArgs(fakes, { text: '' }));
    expect(fakes.timeline).toEqual([
      'ack',
      'service.mayStart',
      'client.views.open',
      'logger.error',
      'respond',
    ]);
    expect(String(fakes.logger.error.mock.calls[0]?.[0])).toContain('expired_trigger_id');
    expect(fakes.respond).toHaveBeenCalledWith({
      response_type: 'ephemeral',
      text: 'The form could not be opened; please try again.',
    });
  });
});

describe('/postmortem <incident>', () => {
  it('acks with a note that it is looking, then asks the service for that incident and answers with the outcome', async () => {
    const { service, calls } = fakeService(fakes, {
      requestForIncident: async () => ({ kind: 'done', run }),
    });
    await postmortemCommand(service)(
      commandArgs(fakes, {
        text: '<https://acme.pagerduty.com/incidents/Q2K8TBZ1L3KJ7M>',
        userId: 'UBOB0001',
        channelId: 'CPAYMENTS1',
      }),
    );
    expect(fakes.timeline).toEqual(['ack', 'service.requestForIncident', 'respond']);
    expect(fakes.ack).toHaveBeenCalledWith({
      response_type: 'ephemeral',
      text: 'Looking up incident Q2K8TBZ1L3KJ7M in PagerDuty…',
    });
    expect(calls.requestForIncident).toHaveBeenCalledWith('Q2K8TBZ1L3KJ7M', 'UBOB0001', 'CPAYMENTS1');
    expect(fakes.respond).toHaveBeenCalledWith({
      response_type: 'ephemeral',
      text: 'Done: <https://acme.pagerduty.com/incidents/Q1|#4711> Checkout &lt;slow&gt; — starting · asked by <@UBOB0001>',
    });
  });

  it.each([
    [
      { kind: 'failed', code: 'incident_not_found', message: 'HTTP 404' },
      'That incident was not found in PagerDuty. Check the ID, number or URL.',
    ],
    [
      { kind: 'not_allowed', reason: 'not_an_approver', approvers: '<!subteam^SAPPROVER>' },
      'Only postmortem approvers can do this (<!subteam^SAPPROVER>). Nothing was changed; ask one of them.',
    ],
  ] as const)('answers a %o outcome in words', async (outcome, text) => {
    const { service } = fakeService(fakes, { requestForIncident: async () => outcome });
    await postmortemCommand(service)(commandArgs(fakes, { text: '#4711' }));
    expect(fakes.timeline).toEqual(['ack', 'service.requestForIncident', 'respond']);
    expect(fakes.respond).toHaveBeenCalledWith({ response_type: 'ephemeral', text });
  });

  it('answers text that names no incident with usage in the ack, escaped, and asks nothing', async () => {
    const { service } = fakeService(fakes, {});
    await postmortemCommand(service)(commandArgs(fakes, { text: 'frobnicate <!here>' }));
    expect(fakes.ack).toHaveBeenCalledWith({
      response_type: 'ephemeral',
      text: `I did not understand \`frobnicate &lt;!here&gt;\`.\n${USAGE}`,
    });
    expect(fakes.timeline).toEqual(['ack']);
  });
});

describe('/postmortem help and status', () => {
  it('help is the ack itself', async () => {
    const { service } = fakeService(fakes, {});
    await postmortemCommand(service)(commandArgs(fakes, { text: 'HELP' }));
    expect(fakes.ack).toHaveBeenCalledWith({ response_type: 'ephemeral', text: USAGE });
    expect(fakes.timeline).toEqual(['ack']);
  });

  it.each([
    ['status', { kind: 'channel' }],
    ['status all', { kind: 'all' }],
    ['status #4711', { kind: 'incident', ref: '4711' }],
    [
      'status <https://acme.pagerduty.com/incidents/Q2K8TBZ1L3KJ7M>',
      { kind: 'incident', ref: 'Q2K8TBZ1L3KJ7M' },
    ],
  ] as const)(
    '%s acks first, then asks the service for that scope, as the person, in this channel',
    async (text, scope) => {
      const { service, calls } = fakeService(fakes, {
        status: async () => ({ kind: 'runs', scope, runs: [], hiddenElsewhere: 0, deadJobs: 0 }),
      });
      await postmortemCommand(service)(
        commandArgs(fakes, { text, userId: 'UBOB0001', channelId: 'CPAYMENTS1' }),
      );
      expect(fakes.timeline).toEqual(['ack', 'service.status', 'respond']);
      expect(fakes.ack).toHaveBeenCalledWith();
      expect(calls.status).toHaveBeenCalledWith('UBOB0001', 'CPAYMENTS1', scope);
    },
  );

  it('status answers with the runs it was given', async () => {
    const { service } = fakeService(fakes, {
      status: async () => ({
        kind: 'runs',
        scope: { kind: 'channel' },
        runs: [run],
        hiddenElsewhere: 0,
        deadJobs: 0,
      }),
    });
    await postmortemCommand(service)(commandArgs(fakes, { text: 'status' }));
    expect(fakes.respond).toHaveBeenCalledWith({
      response_type: 'ephemeral',
      text: 'Recent postmortem runs in this channel:\n• <https://acme.pagerduty.com/incidents/Q1|#4711> Checkout &lt;slow&gt; — starting · asked by <@UBOB0001>',
    });
  });

  it('status all, refused to a non-approver, says why', async () => {
    const { service } = fakeService(fakes, {
      status: async () => ({ kind: 'not_allowed', reason: 'not_an_approver', approvers: '<@UALICE01>' }),
    });
    await postmortemCommand(service)(commandArgs(fakes, { text: 'status all' }));
    expect(fakes.respond).toHaveBeenCalledWith({
      response_type: 'ephemeral',
      text: 'Only postmortem approvers can do this (<@UALICE01>). Nothing was changed; ask one of them.',
    });
  });

  it('status with something that is not an incident says so and asks nothing', async () => {
    const { service } = fakeService(fakes, {});
    await postmortemCommand(service)(commandArgs(fakes, { text: 'status of <things>' }));
    expect(fakes.timeline).toEqual(['ack', 'respond']);
    expect(fakes.respond).toHaveBeenCalledWith({
      response_type: 'ephemeral',
      text: '`of &lt;things&gt;` is not an incident ID, number or URL.',
    });
  });
});
