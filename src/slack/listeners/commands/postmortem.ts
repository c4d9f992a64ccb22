import type { AllMiddlewareArgs, SlackCommandMiddlewareArgs } from '@slack/bolt';

type CommandArgs = SlackCommandMiddlewareArgs & AllMiddlewareArgs;

export const POSTMORTEM_HELP = [
  '*postmortem-bot* gets a Devin postmortem written when a PagerDuty incident resolves.',
  '• P1/P2 incidents (or your configured priorities) start a Devin session by themselves.',
  '• Other incidents post an approval message here with *Approve* / *Skip* buttons.',
].join('\n');

/** `/postmortem`: answers privately with what the bot does. */
export async function postmortemCommand({ ack }: CommandArgs): Promise<void> {
  await ack({ response_type: 'ephemeral', text: POSTMORTEM_HELP });
}
