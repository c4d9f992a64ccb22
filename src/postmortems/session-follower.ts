import type { Logger } from 'pino';
import { DevinApiError, type DevinClient } from '../devin/client.js';
import { errorMessage } from '../errors.js';
import type { RunPatch, Store } from '../store/store.js';
import { changesRun, type FollowLimits, observeSession, type ThreadReplyKind } from './follow.js';
import { pagerDutyNoteJob, syncMessageJob, threadReplyJob } from './jobs.js';
import { FOLLOWED_STATES, type PostmortemRun, type RunState } from './model.js';

export interface SessionFollowerDeps {
  store: Store;
  devin: DevinClient;
  logger: Logger;
  now: () => number;
  limits: FollowLimits;
  approvalRemindAfterMs: number;
  approvalExpireAfterMs: number;
  /** Sessions fetched at once. */
  concurrency?: number;
  /** PAGERDUTY_FROM_EMAIL is set: finished PagerDuty incidents get the PR link as a note. */
  writeBack?: boolean;
}

/**
 * One tick of following: every followed Devin session is fetched and its run moved along (Devin v3 has
 * no completion webhook), and approvals waiting too long are reminded once and then expired. Every change
 * is a conditional transition in the store, so a tick that overlaps another replica's, or one repeated
 * after a restart, posts nothing twice.
 */
export class SessionFollower {
  constructor(private readonly deps: SessionFollowerDeps) {}

  async tick(): Promise<{ followed: number; changed: number }> {
    const { store } = this.deps;
    const runs = await store.runsInStates(FOLLOWED_STATES, 100_000);
    let changed = 0;
    await forEachLimited(runs, this.deps.concurrency ?? 4, async (run) => {
      if (await this.follow(run)) changed++;
    });
    changed += await this.tendApprovals();
    return { followed: runs.length, changed };
  }

  private async follow(run: PostmortemRun): Promise<boolean> {
    const { devin, store, logger, now, limits } = this.deps;
    if (!run.devinSessionId) return false;
    let session: Awaited<ReturnType<DevinClient['getSession']>>;
    try {
      session = await devin.getSession(run.devinSessionId);
    } catch (err) {
      if (err instanceof DevinApiError && err.status === 404) {
        return this.move(
          run,
          'session_failed',
          { error: 'Devin no longer has this session (deleted or archived)' },
          'session_failed',
        );
      }
      // The next tick tries again; giving up is decided by time, not by one failed poll.
      logger.warn({ runId: run.id, err: errorMessage(err) }, 'could not poll the Devin session');
      if (now() - (run.sessionStartedAt ?? run.createdAt) > limits.giveUpAfterMs) {
        return this.move(
          run,
          'abandoned',
          {
            error: `Devin could not be asked about this session for too long (${errorMessage(err)}), so the bot stopped following it`,
          },
          'abandoned',
        );
      }
      return false;
    }
    const observation = observeSession(run, session, now(), limits);
    if (!changesRun(run, observation)) return false;
    if (observation.to === run.state) {
      await store.updateRun(run.id, observation.patch);
      return true;
    }
    const jobs = [syncMessageJob(run.id)];
    if (observation.reply) jobs.push(threadReplyJob(run.id, observation.reply));
    const hasPr = (observation.patch.pullRequests?.length ?? 0) > 0;
    if (observation.to === 'finished' && hasPr && this.deps.writeBack && run.incident.source !== 'slack') {
      jobs.push(pagerDutyNoteJob(run.id));
    }
    const moved = await store.transitionRun(run.id, [run.state], observation.to, observation.patch, jobs);
    if (moved) logger.info({ runId: run.id, from: run.state, to: observation.to }, 'Devin session moved on');
    return moved !== undefined;
  }

  private async move(
    run: PostmortemRun,
    to: RunState,
    patch: RunPatch,
    reply: ThreadReplyKind,
  ): Promise<boolean> {
    const moved = await this.deps.store.transitionRun(run.id, [run.state], to, patch, [
      syncMessageJob(run.id),
      threadReplyJob(run.id, reply),
    ]);
    return moved !== undefined;
  }

  private async tendApprovals(): Promise<number> {
    const { store, now, approvalRemindAfterMs, approvalExpireAfterMs, logger } = this.deps;
    const pending = await store.runsInStates(['awaiting_approval'], 100_000);
    let changed = 0;
    for (const run of pending) {
      const waited = now() - run.createdAt;
      if (waited >= approvalExpireAfterMs) {
        const expired = await store.transitionRun(run.id, ['awaiting_approval'], 'expired', {}, [
          syncMessageJob(run.id),
        ]);
        if (expired) {
          changed++;
          logger.info({ runId: run.id }, 'approval expired');
        }
      } else if (waited >= approvalRemindAfterMs && run.remindedAt === null) {
        const reminded = await store.transitionRun(
          run.id,
          ['awaiting_approval'],
          'awaiting_approval',
          { remindedAt: now() },
          [threadReplyJob(run.id, 'reminder')],
          ['remindedAt'],
        );
        if (reminded) changed++;
      }
    }
    return changed;
  }
}

async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
