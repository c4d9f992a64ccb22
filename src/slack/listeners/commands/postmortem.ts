import type { AllMiddlewareArgs, SlackCommandMiddlewareArgs } from '@slack/bolt';
import { parseIncidentRef } from '../../../pagerduty/incident-ref.js';
import type { PostmortemService, StatusScope } from '../../../postmortems/service.js';
import { untrusted } from '../../format.js';
import { outcomeReply, statusReply, USAGE } from '../../replies.js';
import { adHocModal } from '../../views.js';

type CommandArgs = SlackCommandMiddlewareArgs & AllMiddlewareArgs;

/**
 * `/postmortem [help | status [incident] | <incident>]`. Every branch acks first: the modal opens right
 * after (its trigger_id expires in 3 s); PagerDuty lookups and approver checks happen after the ack and
 * answer through response_url.
 */
export function postmortemCommand(service: PostmortemService) {
  return async ({ ack, command, client, respond, logger }: CommandArgs): Promise<void> => {
    const text = command.text.trim();
    const [sub = '', ...rest] = text.split(/\s+/);

    if (text === '') {
      await ack();
      // The modal starts a session when submitted: only people who may start one get to fill it in.
      const denied = await service.mayStart(command.user_id);
      if (denied) {
        await respond({ response_type: 'ephemeral', ...outcomeReply(denied) });
        return;
      }
      try {
        await client.views.open({ trigger_id: command.trigger_id, view: adHocModal(command.channel_id) });
      } catch (err) {
        logger.error(`views.open failed: ${(err as Error).message}`);
        await respond({
          response_type: 'ephemeral',
          text: 'The form could not be opened; please try again.',
        });
      }
      return;
    }
    if (sub.toLowerCase() === 'help') {
      await ack({ response_type: 'ephemeral', text: USAGE });
      return;
    }
    if (sub.toLowerCase() === 'status') {
      await ack();
      const arg = rest.join(' ');
      const ref = arg !== '' && arg.toLowerCase() !== 'all' ? parseIncidentRef(arg) : undefined;
      if (arg !== '' && arg.toLowerCase() !== 'all' && !ref) {
        await respond({
          response_type: 'ephemeral',
          text: `\`${untrusted(arg, 100)}\` is not an incident ID, number or URL.`,
        });
        return;
      }
      const scope: StatusScope = ref
        ? { kind: 'incident', ref }
        : arg === ''
          ? { kind: 'channel' }
          : { kind: 'all' };
      const view = await service.status(command.user_id, command.channel_id, scope);
      await respond({
        response_type: 'ephemeral',
        ...(view.kind === 'runs' ? statusReply(view) : outcomeReply(view)),
      });
      return;
    }
    const ref = parseIncidentRef(text);
    if (!ref) {
      await ack({
        response_type: 'ephemeral',
        text: `I did not understand \`${untrusted(text, 100)}\`.\n${USAGE}`,
      });
      return;
    }
    await ack({
      response_type: 'ephemeral',
      text: `Looking up incident ${untrusted(ref, 30)} in PagerDuty…`,
    });
    const outcome = await service.requestForIncident(ref, command.user_id, command.channel_id);
    await respond({ response_type: 'ephemeral', ...outcomeReply(outcome) });
  };
}
