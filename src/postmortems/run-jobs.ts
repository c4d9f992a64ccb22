import type { Logger } from 'pino';
import { routeFor } from '../config/routing.js';
import { DevinApiError, type DevinClient, type DevinSession } from '../devin/client.js';
import {
  buildFinalizeMessage,
  buildSessionRequest,
  type PromptContext,
  type SessionSettings,
} from '../devin/prompt.js';
import type { PromptTemplate } from '../devin/template.js';
import { AppError, errorMessage, RetryableError } from '../errors.js';
import type { EvidenceGatherer } from '../evidence/gather.js';
import { PagerDutyApiError, type PagerDutyClient } from '../pagerduty/rest-client.js';
import type { SlackChat } from '../slack/chat.js';
import { classifySlackError, SlackChannelUnusableError } from '../slack/errors.js';
import { renderRunMessage, renderThreadReply } from '../slack/messages.js';
import type { ChannelPacer } from '../slack/pacer.js';
import type { Job, Store } from '../store/store.js';
import type { PostmortemPolicy } from './decision.js';
import type { ThreadReplyKind } from './follow.js';
import { syncMessageJob, terminateSessionJob, threadReplyJob } from './jobs.js';
import type { PostmortemRun } from './model.js';

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
  /** For the reminder's "expires in" line. */
  approvalExpireAfterMs: number;
  /**
   * After a create with an unknown outcome, how long to keep looking its tag up before creating again
   * (default 5 min: well past the client timeout, for Devin to register a slow create).
   */
  devinReconcileWindowMs?: number;
  evidence: EvidenceGatherer;
  /** Per-channel pacing of Slack calls (about one per second per channel). */
  pacer: ChannelPacer;
  prompt: { template: PromptTemplate | undefined; destination: string };
  /** Write-back of the PR link (PAGERDUTY_FROM_EMAIL): both set, or it is off. */
  pagerduty: PagerDutyClient | undefined;
  pagerdutyFromEmail: string | undefined;
}

/**
 * The background side of a run: starting its Devin session exactly once, and keeping its Slack message
 * in step with its state. Both are idempotent: the job queue may run them again after a crash.
 */
export class RunJobs {
  private readonly giveUpAfterMs: number;
  private readonly reconcileWindowMs: number;

  constructor(private readonly deps: RunJobsDeps) {
    this.giveUpAfterMs = deps.devinGiveUpAfterMs ?? 24 * 60 * 60 * 1000;
    this.reconcileWindowMs = deps.devinReconcileWindowMs ?? 5 * 60_000;
  }

  /**
   * Job: create the run's Devin session exactly once. v3 has no idempotency key, so the intent is recorded
   * before every create call. When a create's outcome is unknown (timeout, dropped connection, 5xx), the
   * run's unique tag is looked up, patiently: Devin may register a slow create late, so the bot keeps
   * looking for the reconcile window before it concludes there is no session and creates again.
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
        else if (now() - run.createAttemptedAt < this.reconcileWindowMs) {
          throw new RetryableError(
            'devin_create_unconfirmed',
            'an earlier create may still appear; looking again before creating',
            Math.min(30_000, this.reconcileWindowMs / 4),
            { exact: true },
          );
        }
      }
      if (!session) {
        await store.updateRun(runId, { createAttemptedAt: now() });
        try {
          session = await devin.createSession(
            buildSessionRequest(await this.promptContext(run), this.sessionSettings(run), {
              earlyStart: run.trigger === 'early' && run.finalizeRequestedAt === null,
            }),
          );
        } catch (err) {
          // Devin said no, or never got the request: nothing to reconcile next time.
          if (err instanceof DevinApiError && !err.outcomeUnknown)
            await store.updateRun(runId, { createAttemptedAt: null });
          throw err;
        }
        log.info({ sessionId: session.session_id }, 'Devin session created');
      }
      await store.updateRun(runId, { devinSessionId: session.session_id, devinUrl: session.url });
      const started = await store.transitionRun(
        runId,
        ['starting'],
        'started',
        { sessionStartedAt: now(), devinStatus: session.status ?? null },
        [syncMessageJob(runId)],
      );
      if (!started && (await store.getRun(runId))?.state === 'stopped') {
        // Stop was pressed while the create was in flight: the new session must not run on.
        await store.enqueueJob(terminateSessionJob(runId));
      }
    } catch (err) {
      const retryable =
        (err instanceof DevinApiError && err.retryable) ||
        (err instanceof RetryableError && err.code === 'devin_create_unconfirmed');
      if (retryable && now() - job.createdAt < this.giveUpAfterMs) {
        log.warn(
          { err: errorMessage(err), attempt: job.attempts },
          'Devin session not created yet; will retry',
        );
        // Let the channel see that the run is waiting, not lost, once the Slack message exists or is due.
        if (job.attempts === 1) await store.enqueueJob(syncMessageJob(runId));
        if (err instanceof RetryableError) throw err;
        const e = err as DevinApiError;
        throw new RetryableError(e.code, e.message, e.retryAfterMs, { cause: err });
      }
      const reason = retryable
        ? `Devin was unreachable for too long (${errorMessage(err)})`
        : err instanceof DevinApiError
          ? err.message
          : `unexpected error: ${errorMessage(err)}`;
      log.error({ err: errorMessage(err) }, 'Devin session could not be started');
      await store.transitionRun(runId, ['starting'], 'failed', { error: reason }, [syncMessageJob(runId)]);
    }
  }

  /** Job: tell an early-start session that the incident resolved, so it writes the postmortem now. */
  async finalizeSession(runId: string): Promise<void> {
    const { store, devin, logger } = this.deps;
    const run = await store.getRun(runId);
    if (!run?.devinSessionId || !['started', 'needs_input'].includes(run.state)) return;
    try {
      // Fresh evidence: the incident has run its course since the early start.
      const evidence = await this.deps.evidence.gather(run);
      await store.updateRun(runId, { evidence });
      await devin.sendMessage(run.devinSessionId, buildFinalizeMessage(this.context({ ...run, evidence })));
      await store.updateRun(runId, { finalizeSentAt: this.deps.now() });
      await store.enqueueJob(syncMessageJob(runId));
      logger.info({ runId }, 'asked the early-start session to finish the postmortem');
    } catch (err) {
      if (err instanceof DevinApiError && err.retryable) {
        throw new RetryableError(err.code, err.message, err.retryAfterMs, { cause: err });
      }
      await store.transitionRun(
        runId,
        [run.state],
        'session_failed',
        { error: `Devin did not accept the message to finish the postmortem: ${errorMessage(err)}` },
        [syncMessageJob(runId), threadReplyJob(runId, 'session_failed')],
      );
    }
  }

  /** Job: terminate a stopped run's session (Devin answering 404 means it is already gone). */
  async terminateSession(runId: string): Promise<void> {
    const { store, devin, logger } = this.deps;
    const run = await store.getRun(runId);
    if (!run) return;
    try {
      // A create whose answer never came may still have made a session: find it by the run's tag.
      const sessionId =
        run.devinSessionId ??
        (run.createAttemptedAt !== null
          ? (await devin.findSessionByTag(run.devinTag))?.session_id
          : undefined);
      if (!sessionId) return;
      await devin.terminateSession(sessionId);
      logger.info({ runId, sessionId }, 'Devin session terminated');
    } catch (err) {
      if (err instanceof DevinApiError && err.retryable) {
        throw new RetryableError(err.code, err.message, err.retryAfterMs, { cause: err });
      }
      throw err;
    }
  }

  /** Job: one reply in the run's thread, rendered from the run as stored. */
  async threadReply(runId: string, kind: ThreadReplyKind, job: Job): Promise<void> {
    const { store, slack } = this.deps;
    const run = await store.getRun(runId);
    if (!run) return;
    if (!run.slackTs) {
      // The run's message was never posted (Slack refused it for good): do not block its lane forever.
      if (job.attempts > 600) throw new AppError('slack_message_missing', 'the run message was never posted');
      throw new RetryableError('slack_message_pending', 'the run message is not posted yet', 1000, {
        exact: true,
      });
    }
    this.deps.pacer.take(run.channel, job.id);
    try {
      await slack.post(
        run.channel,
        renderThreadReply(run, kind, this.deps.approvalExpireAfterMs),
        run.slackTs,
      );
    } catch (err) {
      throw this.slackFailure(err, run.channel);
    }
  }

  private slackFailure(err: unknown, channel: string): Error {
    const failure = classifySlackError(err, channel);
    if (failure instanceof RetryableError && failure.code === 'slack_rate_limited') {
      this.deps.pacer.pushBack(channel, failure.retryAfterMs ?? 1000);
    }
    return failure;
  }

  /**
   * Job: make the run's Slack message show its current state: post it the first time, chat.update after.
   * Jobs for one run's message run one at a time, so it is posted once.
   */
  async syncMessage(runId: string, job: Job): Promise<void> {
    const { store, slack, policy, logger } = this.deps;
    const run = await store.getRun(runId);
    if (!run) return;
    const message = renderRunMessage(run);
    this.deps.pacer.take(run.channel, job.id);
    try {
      if (run.slackTs) {
        await slack.update(run.channel, run.slackTs, message);
      } else {
        const posted = await slack.post(run.channel, message);
        await store.updateRun(runId, { channel: posted.channel, slackTs: posted.ts });
      }
    } catch (err) {
      const failure = this.slackFailure(err, run.channel);
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

  /** Job: write the postmortem PR's link back onto the PagerDuty incident as a note. */
  async noteOnIncident(runId: string): Promise<void> {
    const { store, pagerduty, pagerdutyFromEmail, logger } = this.deps;
    const run = await store.getRun(runId);
    if (!run || !pagerduty || !pagerdutyFromEmail || run.pullRequests.length === 0) return;
    const content = [
      `Postmortem written by Devin: ${run.pullRequests.join(' ')}`,
      ...(run.devinUrl ? [`Devin session: ${run.devinUrl}`] : []),
    ].join('\n');
    try {
      await pagerduty.addNote(run.incidentId, content, pagerdutyFromEmail);
      logger.info({ runId, incidentId: run.incidentId }, 'postmortem link written back to PagerDuty');
    } catch (err) {
      if (
        err instanceof PagerDutyApiError &&
        (err.code === 'pagerduty_unavailable' || err.code === 'pagerduty_rate_limited')
      ) {
        throw new RetryableError(err.code, err.message, undefined, { cause: err });
      }
      throw err;
    }
  }

  /** The run's prompt inputs; evidence is gathered once and kept, so retries send the same prompt. */
  private async promptContext(run: PostmortemRun): Promise<PromptContext> {
    let evidence = run.evidence;
    if (!evidence) {
      evidence = await this.deps.evidence.gather(run);
      await this.deps.store.updateRun(run.id, { evidence });
    }
    return this.context({ ...run, evidence });
  }

  private context(run: PostmortemRun): PromptContext {
    const route = this.route(run);
    return {
      incident: run.incident,
      runTag: run.devinTag,
      evidence: run.evidence,
      destination: route.destination ?? this.deps.prompt.destination,
      template: route.template ?? this.deps.prompt.template,
    };
  }

  private route(run: PostmortemRun) {
    return routeFor(this.deps.policy.routing, { id: run.incident.serviceId, name: run.incident.serviceName });
  }

  private sessionSettings(run: PostmortemRun): SessionSettings {
    const route = routeFor(this.deps.policy.routing, {
      id: run.incident.serviceId,
      name: run.incident.serviceName,
    });
    return {
      ...this.deps.session,
      playbookId: route.playbookId ?? this.deps.session.playbookId,
      knowledgeIds: route.knowledgeIds ?? this.deps.session.knowledgeIds,
      repos: route.repos ?? this.deps.session.repos,
    };
  }
}
