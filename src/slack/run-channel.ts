import type { BudgetUsage, SessionBudget } from '../postmortems/budget.js';
import { isDomainError } from '../postmortems/errors.js';
import type { PostmortemRun, StormMember, ThreadReplyKind } from '../postmortems/model.js';
import type { RunChannel } from '../postmortems/ports.js';
import type { SlackChat } from './chat.js';
import { classifySlackError } from './errors.js';
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
    return this.paced(run.channel, callKey, () =>
      this.chat.post(run.channel, renderRunMessage(run, storm, usage), inThread),
    );
  }

  async updateRunMessage(
    run: PostmortemRun & { slackTs: string },
    callKey: number,
    storm?: readonly StormMember[],
  ) {
    const usage = await this.usageFor(run);
    return this.paced(run.channel, callKey, () =>
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
    await this.paced(run.channel, callKey, () =>
      this.chat.post(run.channel, renderThreadReply(run, kind, this.approvalExpireAfterMs), run.slackTs),
    );
  }

  private async paced<T>(channel: string, callKey: number, call: () => Promise<T>): Promise<T> {
    await this.pacer.take(channel, callKey);
    try {
      return await call();
    } catch (err) {
      const failure = classifySlackError(err, channel);
      if (isDomainError(failure, 'chat_rate_limited')) {
        // Holding the channel back for the other jobs is best effort: this job retries after Retry-After
        // whether or not the store took it, and Slack's answer is what the job must report.
        await this.pacer.pushBack(channel, failure.retryAfterMs ?? 1000).catch(() => {});
      }
      throw failure;
    }
  }
}
