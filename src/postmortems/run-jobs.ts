import type { Logger } from 'pino';
import { routeFor } from '../config/routing.js';
import { DevinApiError, type DevinClient, type DevinSession } from '../devin/client.js';
import { buildSessionRequest, type SessionSettings } from '../devin/prompt.js';
import { errorMessage, RetryableError } from '../errors.js';
import type { SlackChat } from '../slack/chat.js';
import { classifySlackError, SlackChannelUnusableError } from '../slack/errors.js';
import { renderRunMessage } from '../slack/messages.js';
import type { Job, NewJob, Store } from '../store/store.js';
import type { PostmortemPolicy } from './decision.js';
import type { PostmortemRun } from './model.js';

/** Jobs of one run's Devin session run in its own lane, so a Devin outage does not hold up Slack. */
export const startSessionJob = (runId: string): NewJob => ({
  kind: 'start_session',
  lane: `run:${runId}`,
  payload: { runId },
});

/** Jobs of one run's Slack message run one at a time (so it is posted once); one waiting job is enough. */
export const syncMessageJob = (runId: string): NewJob => ({
  kind: 'sync_message',
  lane: `slack:${runId}`,
  payload: { runId },
  dedupeKey: `sync:${runId}`,
});

export interface RunJobsDeps {
  store: Store;
  devin: DevinClient;
  slack: SlackChat;
  policy: PostmortemPolicy;
  session: SessionSettings;
  logger: Logger;
  now: () => number;
  /** How long Devin may stay unreachable before a run is marked failed (default 24 h). */
  devinGiveUpAfterMs?: number;
}

/**
 * The background side of a run: starting its Devin session exactly once, and keeping its Slack message
 * in step with its state. Both are idempotent: the job queue may run them again after a crash.
 */
export class RunJobs {
  private readonly giveUpAfterMs: number;

  constructor(private readonly deps: RunJobsDeps) {
    this.giveUpAfterMs = deps.devinGiveUpAfterMs ?? 24 * 60 * 60 * 1000;
  }

  /**
   * Job: create the run's Devin session exactly once. v3 has no idempotency key, so the intent is recorded
   * before the first call, and every later attempt looks the run's unique tag up before creating again.
   */
  async startSession(runId: string, job: Job): Promise<void> {
    const { store, devin, logger, now } = this.deps;
    const run = await store.getRun(runId);
    if (run?.state !== 'starting') return;
    const log = logger.child({ runId, incidentId: run.incidentId, devinTag: run.devinTag });
    try {
      let session: DevinSession | undefined;
      if (run.createAttemptedAt !== null) {
        session = await devin.findSessionByTag(run.devinTag);
        if (session)
          log.info({ sessionId: session.session_id }, 'found the session an earlier attempt created');
      }
      if (!session) {
        await store.updateRun(runId, { createAttemptedAt: now() });
        session = await devin.createSession(
          buildSessionRequest(run.incident, run.devinTag, this.sessionSettings(run)),
        );
        log.info({ sessionId: session.session_id }, 'Devin session created');
      }
      await store.transitionRun(
        runId,
        ['starting'],
        'started',
        { devinSessionId: session.session_id, devinUrl: session.url },
        [syncMessageJob(runId)],
      );
    } catch (err) {
      if (err instanceof DevinApiError && err.retryable && now() - job.createdAt < this.giveUpAfterMs) {
        log.warn({ err: err.message, attempt: job.attempts }, 'Devin unavailable; will retry');
        // Let the channel see that the run is waiting, not lost, once the Slack message exists or is due.
        if (job.attempts === 1) await store.enqueueJob(syncMessageJob(runId));
        throw new RetryableError(err.code, err.message, err.retryAfterMs, { cause: err });
      }
      const reason =
        err instanceof DevinApiError && err.retryable
          ? `Devin was unreachable for too long (${err.message})`
          : err instanceof DevinApiError
            ? err.message
            : `unexpected error: ${errorMessage(err)}`;
      log.error({ err: errorMessage(err) }, 'Devin session could not be started');
      await store.transitionRun(runId, ['starting'], 'failed', { error: reason }, [syncMessageJob(runId)]);
    }
  }

  /**
   * Job: make the run's Slack message show its current state: post it the first time, chat.update after.
   * Jobs for one run's message run one at a time, so it is posted once.
   */
  async syncMessage(runId: string): Promise<void> {
    const { store, slack, policy, logger } = this.deps;
    const run = await store.getRun(runId);
    if (!run) return;
    const message = renderRunMessage(run);
    try {
      if (run.slackTs) {
        await slack.update(run.channel, run.slackTs, message);
      } else {
        const posted = await slack.post(run.channel, message);
        await store.updateRun(runId, { channel: posted.channel, slackTs: posted.ts });
      }
    } catch (err) {
      const failure = classifySlackError(err, run.channel);
      if (
        failure instanceof SlackChannelUnusableError &&
        !run.slackTs &&
        run.channel !== policy.defaultChannel
      ) {
        // The routed channel is gone or private without the bot: report in the default channel instead.
        logger.warn(
          { runId, channel: run.channel, slackError: failure.slackError },
          'falling back to the default channel',
        );
        await store.updateRun(runId, { channel: policy.defaultChannel });
        throw new RetryableError('slack_channel_fallback', failure.message, 0);
      }
      throw failure;
    }
  }

  private sessionSettings(run: PostmortemRun): SessionSettings {
    const route = routeFor(this.deps.policy.routing, {
      id: run.incident.serviceId,
      name: run.incident.serviceName,
    });
    return {
      ...this.deps.session,
      playbookId: route.playbookId ?? this.deps.session.playbookId,
      repos: route.repos ?? this.deps.session.repos,
    };
  }
}
