import type { Logger } from 'pino';
import type { Job, Store } from '../store/store.js';
import type { ApprovalDigest } from './digest.js';
import { DomainError, isDomainError } from './errors.js';
import type { PostmortemRun, RunState, ThreadReplyKind } from './model.js';
import type { RunChannel } from './ports.js';

/** How many times (about a second apart) a started run's message waits for its channel's digest. */
const DIGEST_WAIT_ATTEMPTS = 300;

/**
 * A run that asks people first: an approval request, or a run policy would have started (an auto-start
 * priority, a storm group) that the day's budget held for approval (an early start is never held: it is
 * not made over budget). It stays one after it is decided (its placement is a request's), so a held run
 * approved from the digest reports in the digest's thread.
 */
const asksApproval = (run: PostmortemRun): boolean => run.trigger === 'approval' || run.budgetHold !== null;

/** A run started by policy (auto-start, an early start, a storm group), not by a person, never held. */
const startedByPolicy = (run: PostmortemRun): boolean =>
  (run.trigger === 'auto' || run.trigger === 'early') && !asksApproval(run);

/** States a request leaves the digest's waiting list for: decided either way, or expired. */
const DIGEST_CHANGES: readonly RunState[] = ['skipped', 'expired', 'queued', 'starting'];

export interface MessageWorkerDeps {
  store: Store;
  channel: RunChannel;
  /** Where a run reports when its routed channel refuses the bot. */
  defaultChannel: string;
  logger: Logger;
  /** Folds approval requests into their channel's digest in a storm (SLACK_DIGEST_AFTER). */
  digest?: ApprovalDigest | undefined;
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
    if (await this.shownInDigest(run)) return;
    // Storms: a group's message lists its incidents, redrawn as they join.
    const members = await store.stormMembers(runId);
    const storm = members.length > 1 ? members : undefined;
    try {
      if (run.slackTs) {
        await channel.updateRunMessage({ ...run, slackTs: run.slackTs }, job.id, storm);
      } else {
        const posted = await channel.postRunMessage(run, job.id, storm, await this.threadOfNew(run, job));
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

  /**
   * The thread a run's first message goes in, if not the channel: the digest's, for a request approved
   * there, or for a run started by policy in a storm (placed here, the first time; digest.ts). Such a run
   * whose digest is not posted yet waits for it: the job is rescheduled, the session is not held up. Should
   * the digest never come (Slack refusing it for good), the message is posted in the channel after a while
   * rather than lost; a digest posted after that does not adopt it, so its replies stay under it.
   */
  private async threadOfNew(run: PostmortemRun, job: Job): Promise<string | undefined> {
    const digest = this.deps.digest;
    if (!digest?.enabled) return undefined;
    if (!startedByPolicy(run)) return digest.threadFor(run);
    const placed = await digest.placeStarted(run);
    if (placed.shownIn === 'card') return undefined;
    if (placed.threadTs) return placed.threadTs;
    if (job.attempts > DIGEST_WAIT_ATTEMPTS) {
      this.deps.logger.warn(
        { runId: run.id, incidentId: run.incidentId, channel: run.channel },
        'the channel digest was never posted; posting the run message in the channel',
      );
      return undefined;
    }
    throw new DomainError('digest_pending', 'the channel digest is not posted yet', { retryAfterMs: 1000 });
  }

  /**
   * Whether the run's message is the channel's digest rather than its own: an approval request folded
   * into the digest (placed now, the first time), or one decided there without a session (skipped) or
   * expired there. A request decided there for a session gets its own message from now on. Every
   * decision or expiry of a request redraws the digest, if the channel has one.
   */
  private async shownInDigest(run: PostmortemRun): Promise<boolean> {
    const digest = this.deps.digest;
    if (!digest?.enabled || !asksApproval(run)) return false;
    if (run.state === 'awaiting_approval') return !run.slackTs && (await digest.place(run)) === 'digest';
    if (DIGEST_CHANGES.includes(run.state)) await digest.changed(run);
    return (
      !run.slackTs && (run.state === 'skipped' || run.state === 'expired') && (await digest.isInDigest(run))
    );
  }

  /** Job: one reply in the run's thread, drawn from the run as stored. */
  async threadReply(runId: string, kind: ThreadReplyKind, job: Job): Promise<void> {
    const run = await this.deps.store.getRun(runId);
    if (!run) return;
    // A reminder of a request in the digest: the digest itself is the reminder (it lists what waits).
    if (!run.slackTs && kind === 'reminder' && (await this.deps.digest?.isInDigest(run))) return;
    if (!run.slackTs) {
      // The run's message was never posted (Slack refused it for good): do not block its lane forever.
      if (job.attempts > 600) throw new DomainError('message_missing', 'the run message was never posted');
      throw new DomainError('message_pending', 'the run message is not posted yet', { retryAfterMs: 1000 });
    }
    // A run approved from the digest, or started by policy and folded there, has its message in the
    // digest's thread: its replies go there too.
    const thread = (await this.deps.digest?.threadFor(run)) ?? run.slackTs;
    await this.deps.channel.postThreadReply({ ...run, slackTs: thread }, kind, job.id);
  }
}
