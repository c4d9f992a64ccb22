import type { AllMiddlewareArgs, SlackViewMiddlewareArgs, ViewSubmitAction } from '@slack/bolt';
import type { PostmortemService } from '../../../postmortems/service.js';
import { outcomeReply } from '../../replies.js';
import { parseAdHocSubmission, type ViewState } from '../../views.js';

type ViewArgs = SlackViewMiddlewareArgs<ViewSubmitAction> & AllMiddlewareArgs;

/**
 * The ad-hoc modal's submission: invalid input goes back into the modal next to its field; valid input
 * closes it and starts the run. The view ID makes a resubmission of the same modal open no second run.
 */
export function adHocSubmission(service: PostmortemService, now: () => number) {
  return async ({ ack, view, body, client, logger }: ViewArgs): Promise<void> => {
    const parsed = parseAdHocSubmission(view.state.values as ViewState, now());
    if (!parsed.ok) {
      await ack({ response_action: 'errors', errors: parsed.errors });
      return;
    }
    await ack();
    const outcome = await service.startAdHoc({ ...parsed.incident, viewId: view.id }, body.user.id);
    if (outcome.kind === 'done') return;
    const reply = outcomeReply(outcome);
    try {
      await client.chat.postEphemeral({ channel: parsed.incident.channel, user: body.user.id, ...reply });
    } catch (err) {
      // Not in that channel: tell the person directly instead.
      logger.warn(`postEphemeral failed (${(err as Error).message}); sending a direct message`);
      await client.chat.postMessage({ channel: body.user.id, ...reply });
    }
  };
}
