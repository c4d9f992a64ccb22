import type { AllMiddlewareArgs, BlockButtonAction, SlackActionMiddlewareArgs } from '@slack/bolt';
import type { PostmortemRun } from '../../../postmortems/model.js';
import type { DecisionResult, PostmortemService } from '../../../postmortems/service.js';
import { mention } from '../../format.js';

type ButtonArgs = SlackActionMiddlewareArgs<BlockButtonAction> & AllMiddlewareArgs;
type Decide = (runId: string, userId: string) => Promise<DecisionResult>;

/**
 * The Approve and Skip buttons: ack at once, then one atomic transition in the store. The message itself is
 * updated by the run's message job; a click that lost the race is told who won, privately.
 */
function decisionButton(decide: Decide) {
  return async ({ ack, action, body, respond }: ButtonArgs): Promise<void> => {
    await ack();
    const result = await decide(action.value ?? '', body.user.id);
    if (!result.ok) {
      await respond({
        response_type: 'ephemeral',
        replace_original: false,
        text: alreadyDecidedText(result.run),
      });
    }
  };
}

export const approvePostmortem = (service: PostmortemService) =>
  decisionButton((r, u) => service.approve(r, u));
export const skipPostmortem = (service: PostmortemService) => decisionButton((r, u) => service.skip(r, u));

export function alreadyDecidedText(run: PostmortemRun | undefined): string {
  if (!run) return 'This postmortem request no longer exists.';
  const who = run.decidedBy ? mention(run.decidedBy) : 'automatically';
  switch (run.state) {
    case 'skipped':
      return `This postmortem was already skipped by ${who}.`;
    case 'starting':
      return `This postmortem was already approved by ${who}; its Devin session is starting.`;
    case 'started':
      return `This postmortem was already approved by ${who}; its Devin session is running.`;
    case 'failed':
      return `This postmortem was already approved by ${who}, but its Devin session could not be started.`;
    case 'awaiting_approval':
      return 'This postmortem is still waiting for a decision; please try again.';
  }
}
