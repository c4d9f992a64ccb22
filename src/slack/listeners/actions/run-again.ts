import type { AllMiddlewareArgs, BlockButtonAction, SlackActionMiddlewareArgs } from '@slack/bolt';
import type { PostmortemService } from '../../../postmortems/service.js';
import { outcomeReply } from '../../replies.js';

type ButtonArgs = SlackActionMiddlewareArgs<BlockButtonAction> & AllMiddlewareArgs;

/**
 * Run again, offered privately when /postmortem finds an existing run. The button carries the attempt it
 * follows, so any number of clicks open exactly one new run.
 */
export function runAgain(service: PostmortemService) {
  return async ({ ack, action, body, respond }: ButtonArgs): Promise<void> => {
    await ack();
    const [incidentId = '', attempt = ''] = (action.value ?? '').split('|');
    const channel = body.channel?.id ?? body.container?.channel_id ?? '';
    const outcome = await service.runAgain(incidentId, Number(attempt), body.user.id, channel);
    await respond({ response_type: 'ephemeral', replace_original: true, ...outcomeReply(outcome) });
  };
}
