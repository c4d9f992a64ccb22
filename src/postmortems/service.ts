import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { routeFor } from '../config/routing.js';
import { DevinApiError, type DevinClient, type DevinSession } from '../devin/client.js';
import { buildSessionRequest, type SessionSettings } from '../devin/prompt.js';
import { errorMessage, RetryableError } from '../errors.js';
import { INCIDENT_STATE_EVENTS, type WebhookEvent } from '../pagerduty/webhook.js';
import type { SlackChat } from '../slack/chat.js';
import { classifySlackError, SlackChannelUnusableError } from '../slack/errors.js';
import { renderRunMessage } from '../slack/messages.js';
import type { Job, NewJob, Store } from '../store/store.js';
import { decidePostmortem, type PostmortemPolicy } from './decision.js';
import { applyIncidentEvent } from './incident.js';
import type { PostmortemRun, RunState } from './model.js';

export interface PostmortemServiceDeps {
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

export type DecisionResult = { ok: true; run: PostmortemRun } | { ok: false; run: PostmortemRun | undefined };

const startSessionJob = (runId: string): NewJob => ({
  kind: 'start_session',
  lane: `run:${runId}`,
  payload: { runId },
});
const syncMessageJob = (runId: string): NewJob => ({
  kind: 'sync_message',
  lane: `slack:${runId}`,
  payload: { runId },
  dedupeKey: `sync:${runId}`,
});

/**
 * The postmortem lifecycle: what a resolved incident gets, what a click does, how a Devin session is
 * started exactly once, and how the run's Slack message follows its state. Transport (HTTP, Slack
 * listeners, the job runner) only calls in here.
 */
export class PostmortemService {
  private readonly giveUpAfterMs: number;

  constructor(private readonly deps: PostmortemServiceDeps) {
    this.giveUpAfterMs = deps.devinGiveUpAfterMs ?? 24 * 60 * 60 * 1000;
  }

  /** Job: fold a stored webhook event into its incident and, on incident.resolved, decide the postmortem. */
  async processEvent(eventId: string): Promise<void> {
    const { store, logger } = this.deps;
    const stored = await store.getEvent(eventId);
    if (!stored) return;
    const event = JSON.parse(stored.payload) as WebhookEvent;
    const log = logger.child({ eventId, eventType: event.event_type, incidentId: stored.incidentId });
    if (!INCIDENT_STATE_EVENTS.has(event.event_type) || !stored.incidentId) {
      log.debug('event needs no action');
      return;
    }
    const previous = await store.getIncident(stored.incidentId);
    const incident = applyIncidentEvent(previous, event);
    if (!incident) {
      log.warn('incident event without usable incident data');
      return;
    }
    if (incident !== previous) await store.saveIncident(incident);
    if (event.event_type !== 'incident.resolved' || incident.status !== 'resolved') return;

    const decision = decidePostmortem(incident, this.deps.policy);
    const runId = randomUUID();
    const opened = await store.openRun(
      {
        id: runId,
        incidentId: incident.id,
        attempt: 1,
        state: decision.action === 'auto_start' ? 'starting' : 'awaiting_approval',
        trigger: decision.action === 'auto_start' ? 'auto' : 'approval',
        channel: decision.channel,
        slackTs: null,
        decidedBy: null,
        decidedAt: null,
        devinTag: `pm-run-${runId}`,
        devinSessionId: null,
        devinUrl: null,
        createAttemptedAt: null,
        error: null,
        incident,
      },
      decision.action === 'auto_start' ? [startSessionJob(runId)] : [syncMessageJob(runId)],
    );
    if (opened)
      log.info({ runId, action: decision.action, channel: decision.channel }, 'postmortem run opened');
    else log.info('incident already has a postmortem run; nothing to do');
  }

  /** A person approved: one atomic transition, so concurrent clicks start one session. */
  approve(runId: string, userId: string): Promise<DecisionResult> {
    return this.decide(runId, userId, 'starting', [syncMessageJob(runId), startSessionJob(runId)]);
  }

  skip(runId: string, userId: string): Promise<DecisionResult> {
    return this.decide(runId, userId, 'skipped', [syncMessageJob(runId)]);
  }

  private async decide(runId: string, userId: string, to: RunState, jobs: NewJob[]): Promise<DecisionResult> {
    const { store, now } = this.deps;
    const run = await store.transitionRun(
      runId,
      ['awaiting_approval'],
      to,
      { decidedBy: userId, decidedAt: now() },
      jobs,
    );
    if (run) this.deps.logger.info({ runId, userId, state: to }, 'postmortem decided');
    return run ? { ok: true, run } : { ok: false, run: await store.getRun(runId) };
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
