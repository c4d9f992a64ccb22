import type { BudgetUsage, SessionBudget } from '../postmortems/budget.js';
import type { PostmortemRun, StormMember, ThreadReplyKind } from '../postmortems/model.js';
import type { RunChannel } from '../postmortems/ports.js';
import type { SlackChat } from './chat.js';
import { renderRunMessage, renderThreadReply } from './messages.js';
import type { ChannelPacer } from './pacer.js';

/**
 * The domain's RunChannel in Slack: a run's message and thread replies rendered from the run (messages.ts),
 * paced per channel across replicas (pacer.ts), and Slack's failures told apart as ChatCode (errors.ts).
 */
export class SlackRunChannel implements RunChannel {
  constructor(
    private readonly chat: SlackChat,
    private readonly pacer: ChannelPacer,
    /** For the reminder's "expires in" line. */
    private readonly approvalExpireAfterMs: number,
    /** What is left of the day's budget (approval messages) and how many sessions run (waiting ones). */
    private readonly budget?: SessionBudget,
  ) {}

  async postRunMessage(
    run: PostmortemRun,
    callKey: number,
    storm?: readonly StormMember[],
    inThread?: string,
  ) {
    const usage = await this.usageFor(run);
    return this.pacer.paced(run.channel, callKey, () =>
      this.chat.post(run.channel, renderRunMessage(run, storm, usage), inThread),
    );
  }

  async updateRunMessage(
    run: PostmortemRun & { slackTs: string },
    callKey: number,
    storm?: readonly StormMember[],
  ) {
    const usage = await this.usageFor(run);
    return this.pacer.paced(run.channel, callKey, () =>
      this.chat.update(run.channel, run.slackTs, renderRunMessage(run, storm, usage)),
    );
  }

  /** The budget's figures, read only for the messages that show them. */
  private async usageFor(run: PostmortemRun): Promise<BudgetUsage | undefined> {
    if (!this.budget) return undefined;
    const shows =
      run.state === 'queued' ||
      (run.state === 'awaiting_approval' && (this.budget.hasDailyLimit || run.budgetHold !== null));
    return shows ? this.budget.usage() : undefined;
  }

  async postThreadReply(run: PostmortemRun & { slackTs: string }, kind: ThreadReplyKind, callKey: number) {
    await this.pacer.paced(run.channel, callKey, () =>
      this.chat.post(run.channel, renderThreadReply(run, kind, this.approvalExpireAfterMs), run.slackTs),
    );
  }
}
