import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { RunPatch, Store } from '../store/store.js';
import { isDomainError } from './errors.js';
import { appendIncidentsJob } from './jobs.js';
import { FOLLOWED_STATES, type Lifecycle, type RunEvent } from './lifecycle.js';
import type { PostmortemRun } from './model.js';
import { changesRun, type FollowLimits, observeSession } from './observe-session.js';
import type { Session, SessionApi } from './ports.js';

export interface SessionFollowerDeps {
  store: Store;
  lifecycle: Lifecycle;
  sessions: SessionApi;
  logger: Logger;
  now: () => number;
  limits: FollowLimits;
  approvalRemindAfterMs: number;
  approvalExpireAfterMs: number;
  /** Sessions fetched at once. */
  concurrency?: number;
}

/**
 * One tick of following: every followed Devin session is fetched and its run moved along (Devin v3 has
 * no completion webhook; observe-session.ts decides what a poll means), and approvals waiting too long
 * are reminded once and then expired. With several replicas, each scheduled tick runs on one of them (the
 * schedule's lease, jobs/schedule.ts). Every change is also a lifecycle step, a conditional write, so a tick
 * that overlaps another anyway (a lease that ran out under a slow store), or one repeated after a restart,
 * posts nothing twice.
 */
export class SessionFollower {
  constructor(private readonly deps: SessionFollowerDeps) {}

  async tick(): Promise<{ followed: number; changed: number }> {
    const runs = await this.deps.store.runsInStates(FOLLOWED_STATES, 100_000);
    let changed = 0;
    await forEachLimited(runs, this.deps.concurrency ?? 4, async (run) => {
      if (await this.follow(run)) changed++;
      await this.tendStorm(run);
    });
    changed += await this.tendApprovals();
    // The fallback for a wake-up that was lost (admit_queued is queued by every step that frees a slot).
    const admitted = await this.deps.lifecycle.admitQueued();
    for (const run of admitted) {
      this.deps.logger.info(
        { runId: run.id, incidentId: run.incidentId },
        'a session slot was free: starting',
      );
    }
    changed += admitted.length;
    return { followed: runs.length, changed };
  }

  private async follow(run: PostmortemRun): Promise<boolean> {
    const { sessions, store, logger, now, limits } = this.deps;
    if (!run.devinSessionId) return false;
    let session: Session;
    try {
      session = await sessions.get(run.devinSessionId);
    } catch (err) {
      if (isDomainError(err, 'session_not_found')) {
        return this.step(run, 'session_failed', {
          error: 'Devin no longer has this session (deleted or archived)',
        });
      }
      // The next tick tries again; giving up is decided by time, not by one failed poll.
      logger.warn(
        { runId: run.id, incidentId: run.incidentId, err: errorMessage(err) },
        'could not poll the Devin session',
      );
      if (now() - (run.sessionStartedAt ?? run.createdAt) > limits.giveUpAfterMs) {
        return this.step(run, 'give_up', {
          error: `Devin could not be asked about this session for too long (${errorMessage(err)}), so the bot stopped following it and asked Devin to terminate it`,
        });
      }
      return false;
    }
    const observation = observeSession(run, session, now(), limits);
    if (!changesRun(run, observation)) return false;
    if (!observation.event) {
      await store.updateRun(run.id, observation.patch);
      return true;
    }
    return this.step(run, observation.event, observation.patch);
  }

  /**
   * Storms: a followed group with incidents its session was not told (their append job given up, or
   * discarded by an operator) gets the job again; one already waiting is not doubled (its dedupe key).
   */
  private async tendStorm(run: PostmortemRun): Promise<void> {
    const members = await this.deps.store.stormMembers(run.id);
    if (members.some((m) => m.deliveredAt === null && m.incident.id !== run.incidentId)) {
      await this.deps.store.enqueueJob(appendIncidentsJob(run.id));
    }
  }

  private async step(run: PostmortemRun, event: RunEvent, patch: RunPatch): Promise<boolean> {
    const moved = await this.deps.lifecycle.fire(run.id, event, { expect: run.state, patch });
    if (moved)
      this.deps.logger.info(
        { runId: run.id, incidentId: run.incidentId, from: run.state, to: moved.state },
        'Devin session moved on',
      );
    return moved !== undefined;
  }

  private async tendApprovals(): Promise<number> {
    const { store, lifecycle, now, approvalRemindAfterMs, approvalExpireAfterMs, logger } = this.deps;
    const pending = await store.runsInStates(['awaiting_approval'], 100_000);
    let changed = 0;
    for (const run of pending) {
      const waited = now() - run.createdAt;
      if (waited >= approvalExpireAfterMs) {
        if (await lifecycle.fire(run.id, 'expire')) {
          changed++;
          logger.info({ runId: run.id, incidentId: run.incidentId }, 'approval expired');
        }
      } else if (waited >= approvalRemindAfterMs && run.remindedAt === null) {
        const reminded = await lifecycle.fire(run.id, 'remind', {
          expect: 'awaiting_approval',
          patch: { remindedAt: now() },
          onlyIfUnset: ['remindedAt'],
        });
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
