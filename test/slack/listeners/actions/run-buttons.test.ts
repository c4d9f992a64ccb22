import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Outcome } from '../../../../src/postmortems/service.js';
import {
  approvePostmortem,
  retryPostmortem,
  skipPostmortem,
  startAnyway,
  stopPostmortem,
} from '../../../../src/slack/listeners/actions/run-buttons.js';
import { aRun } from '../../../helpers/builders.js';
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

const BUTTONS = [
  { listener: approvePostmortem, method: 'approve', actionId: 'postmortem_approve' },
  { listener: skipPostmortem, method: 'skip', actionId: 'postmortem_skip' },
  { listener: startAnyway, method: 'startAnyway', actionId: 'postmortem_start_anyway' },
  { listener: retryPostmortem, method: 'retry', actionId: 'postmortem_retry' },
  { listener: stopPostmortem, method: 'stop', actionId: 'postmortem_stop' },
] as const;

describe.each(BUTTONS)('the $actionId button', ({ listener, method, actionId }) => {
  const click = () => buttonArgs(fakes, { actionId, value: 'run-7', userId: 'UBOB0001' });

  it(`acks first, then asks the service to ${method} that run for the person who clicked; says nothing more when done`, async () => {
    const { service, calls } = fakeService(fakes, {
      [method]: async (): Promise<Outcome> => ({ kind: 'done', run: aRun({ id: 'run-7' }) }),
    });
    await listener(service)(click());
    expect(fakes.ack).toHaveBeenCalledTimes(1);
    expect(fakes.ack).toHaveBeenCalledWith();
    expect(calls[method]).toHaveBeenCalledWith('run-7', 'UBOB0001');
    expect(fakes.timeline).toEqual(['ack', `service.${method}`]);
    expect(fakes.respond).not.toHaveBeenCalled();
    expect(fakes.slack.calls).toEqual([]);
  });

  it('tells a person who may not act, privately, and leaves the message alone', async () => {
    const { service } = fakeService(fakes, {
      [method]: async (): Promise<Outcome> => ({
        kind: 'not_allowed',
        reason: 'not_an_approver',
        approvers: '<@UALICE01>',
      }),
    });
    await listener(service)(click());
    expect(fakes.timeline).toEqual(['ack', `service.${method}`, 'respond']);
    expect(fakes.respond).toHaveBeenCalledWith({
      response_type: 'ephemeral',
      replace_original: false,
      text: 'Only postmortem approvers can do this (<@UALICE01>). Nothing was changed; ask one of them.',
    });
  });
});

describe('run buttons, when the click changed nothing', () => {
  const click = () => buttonArgs(fakes, { actionId: 'postmortem_approve', value: 'run-7' });

  it('tells the slower of two clickers who was faster', async () => {
    const { service } = fakeService(fakes, {
      approve: async () => ({
        kind: 'stale',
        run: aRun({ id: 'run-7', state: 'started', decidedBy: 'UBOB0001' }),
      }),
    });
    await approvePostmortem(service)(click());
    expect(fakes.respond).toHaveBeenCalledWith({
      response_type: 'ephemeral',
      replace_original: false,
      text: 'This postmortem was already started by <@UBOB0001>; Devin session running.',
    });
  });

  it('says when the run no longer exists', async () => {
    const { service } = fakeService(fakes, { approve: async () => ({ kind: 'stale', run: undefined }) });
    await approvePostmortem(service)(click());
    expect(fakes.respond).toHaveBeenCalledWith(
      expect.objectContaining({ text: 'This postmortem request no longer exists.' }),
    );
  });

  it('says why a request failed, with the reason escaped', async () => {
    const { service } = fakeService(fakes, {
      approve: async () => ({
        kind: 'failed',
        code: 'approvers_unavailable',
        message: 'group <S1> & co',
      }),
    });
    await approvePostmortem(service)(click());
    expect(fakes.respond).toHaveBeenCalledWith({
      response_type: 'ephemeral',
      replace_original: false,
      text: 'The list of postmortem approvers could not be checked, so nothing was changed: group &lt;S1&gt; &amp; co',
    });
  });

  it('tells a guest why they may not decide', async () => {
    const { service } = fakeService(fakes, {
      approve: async () => ({ kind: 'not_allowed', reason: 'guest', approvers: 'anyone' }),
    });
    await approvePostmortem(service)(click());
    expect(fakes.respond).toHaveBeenCalledWith(
      expect.objectContaining({
        replace_original: false,
        text: expect.stringMatching(/^Guests cannot start or decide postmortems unless an admin lists them/),
      }),
    );
  });

  it('does nothing when the ack itself fails (Slack shows the click failed), and lets Bolt see the error', async () => {
    const { service, calls } = fakeService(fakes, {
      approve: async () => ({ kind: 'done', run: aRun() }),
    });
    fakes.ack.mockRejectedValueOnce(new Error('socket hang up'));
    await expect(approvePostmortem(service)(click())).rejects.toThrow('socket hang up');
    expect(calls.approve).not.toHaveBeenCalled();
    expect(fakes.respond).not.toHaveBeenCalled();
  });
});
