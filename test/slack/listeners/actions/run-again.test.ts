import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runAgain } from '../../../../src/slack/listeners/actions/run-again.js';
import { anIncident, aRun } from '../../../helpers/builders.js';
import {
  buttonArgs,
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

const click = (value: string) =>
  buttonArgs(fakes, { actionId: 'postmortem_run_again', value, userId: 'UBOB0001', channelId: 'CPAYMENTS1' });

describe('the Run again button (on the private answer to /postmortem)', () => {
  it('acks first, asks for the attempt after the one the button carries, and replaces the answer with the outcome', async () => {
    const run = aRun({
      id: 'run-2',
      attempt: 2,
      state: 'starting',
      trigger: 'manual',
      decidedBy: 'UBOB0001',
      incident: anIncident({ id: 'PFAILED1', number: 12, title: 'Disk full' }),
    });
    const { service, calls } = fakeService(fakes, { runAgain: async () => ({ kind: 'done', run }) });
    await runAgain(service)(click('PFAILED1|1'));
    expect(fakes.timeline).toEqual(['ack', 'service.runAgain', 'respond']);
    expect(calls.runAgain).toHaveBeenCalledWith('PFAILED1', 1, 'UBOB0001', 'CPAYMENTS1');
    expect(fakes.respond).toHaveBeenCalledWith({
      response_type: 'ephemeral',
      replace_original: true,
      text: 'Done: <https://acme.pagerduty.com/incidents/Q1|#12> Disk full — starting · run 2 · asked by <@UBOB0001>',
    });
  });

  it('answers a click that came too late with the run that already exists, and offers Run again for it', async () => {
    const latest = aRun({ id: 'run-3', incidentId: 'PFAILED1', attempt: 3, state: 'started' });
    const { service } = fakeService(fakes, { runAgain: async () => ({ kind: 'exists', run: latest }) });
    await runAgain(service)(click('PFAILED1|1'));
    const reply = fakes.respond.mock.calls[0]?.[0] as any;
    expect(reply).toMatchObject({ response_type: 'ephemeral', replace_original: true });
    expect(reply.text).toMatch(
      /^This incident already has a postmortem run: .* — Devin session running · run 3/,
    );
    const button = reply.blocks.find((b: any) => b.type === 'actions').elements[0];
    expect(button).toMatchObject({ action_id: 'postmortem_run_again', value: 'PFAILED1|3' });
  });

  it('tells a non-approver privately that nothing changed', async () => {
    const { service } = fakeService(fakes, {
      runAgain: async () => ({ kind: 'not_allowed', reason: 'not_an_approver', approvers: '<@UALICE01>' }),
    });
    await runAgain(service)(click('PFAILED1|1'));
    expect(fakes.respond).toHaveBeenCalledWith({
      response_type: 'ephemeral',
      replace_original: true,
      text: 'Only postmortem approvers can do this (<@UALICE01>). Nothing was changed; ask one of them.',
    });
  });
});
