import type { Logger } from 'pino';
import type { Job, Store } from '../store/store.js';
import { DomainError, isDomainError } from './errors.js';
import type { ThreadReplyKind } from './model.js';
import type { RunChannel } from './ports.js';

export interface MessageWorkerDeps {
  store: Store;
  channel: RunChannel;
  /** Where a run reports when its routed channel refuses the bot. */
  defaultChannel: string;
  logger: Logger;
}

/**
 * The Slack side of a run, as jobs: its message always shows its stored state, and each thread reply is
 * posted once. One run's Slack jobs run one at a time (jobs.ts), so the message is posted once.
 */
export class MessageWorker {
  constructor(private readonly deps: MessageWorkerDeps) {}

  /** Job: post the run's message the first time, update it after. */
  async syncMessage(runId: string, job: Job): Promise<void> {
    const { store, channel, defaultChannel, logger } = this.deps;
    const run = await store.getRun(runId);
    if (!run) return;
    // Storms: a group's message lists its incidents, redrawn as they join.
    const members = await store.stormMembers(runId);
    const storm = members.length > 1 ? members : undefined;
    try {
      if (run.slackTs) {
        await channel.updateRunMessage({ ...run, slackTs: run.slackTs }, job.id, storm);
      } else {
        const posted = await channel.postRunMessage(run, job.id, storm);
        await store.updateRun(runId, { channel: posted.channel, slackTs: posted.ts });
      }
    } catch (err) {
      if (isDomainError(err, 'chat_channel_unusable') && !run.slackTs && run.channel !== defaultChannel) {
        // The routed channel is gone or private without the bot: report in the default channel instead.
        logger.warn(
          { runId, incidentId: run.incidentId, channel: run.channel, err: err.message },
          'falling back to the default channel',
        );
        await store.updateRun(runId, { channel: defaultChannel });
        throw new DomainError('message_rerouted', err.message, { retryAfterMs: 0 });
      }
      throw err;
    }
  }

  /** Job: one reply in the run's thread, drawn from the run as stored. */
  async threadReply(runId: string, kind: ThreadReplyKind, job: Job): Promise<void> {
    const run = await this.deps.store.getRun(runId);
    if (!run) return;
    if (!run.slackTs) {
      // The run's message was never posted (Slack refused it for good): do not block its lane forever.
      if (job.attempts > 600) throw new DomainError('message_missing', 'the run message was never posted');
      throw new DomainError('message_pending', 'the run message is not posted yet', { retryAfterMs: 1000 });
    }
    await this.deps.channel.postThreadReply({ ...run, slackTs: run.slackTs }, kind, job.id);
  }
}
