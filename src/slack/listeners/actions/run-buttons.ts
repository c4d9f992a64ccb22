import type { AllMiddlewareArgs, BlockButtonAction, SlackActionMiddlewareArgs } from '@slack/bolt';
import type { Outcome, PostmortemService } from '../../../postmortems/service.js';
import { outcomeReply } from '../../replies.js';

type ButtonArgs = SlackActionMiddlewareArgs<BlockButtonAction> & AllMiddlewareArgs;
type RunAction = (runId: string, userId: string) => Promise<Outcome>;

/**
 * Buttons on a run's message (Approve, Skip, Start anyway, Retry, Stop): ack at once, then one atomic transition
 * in the store; the message itself is updated by the run's message job. Whoever's click changed nothing
 * (too late, or not an approver) is told why, privately.
 */
function runButton(act: RunAction) {
  return async ({ ack, action, body, respond }: ButtonArgs): Promise<void> => {
    await ack();
    const outcome = await act(action.value ?? '', body.user.id);
    if (outcome.kind !== 'done') {
      await respond({ response_type: 'ephemeral', replace_original: false, ...outcomeReply(outcome) });
    }
  };
}

export const approvePostmortem = (service: PostmortemService) => runButton((r, u) => service.approve(r, u));
export const skipPostmortem = (service: PostmortemService) => runButton((r, u) => service.skip(r, u));
export const startAnyway = (service: PostmortemService) => runButton((r, u) => service.startAnyway(r, u));
export const retryPostmortem = (service: PostmortemService) => runButton((r, u) => service.retry(r, u));
export const stopPostmortem = (service: PostmortemService) => runButton((r, u) => service.stop(r, u));
