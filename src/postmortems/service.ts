import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { AppError, RetryableError } from '../errors.js';
import type { PagerDutyClient } from '../pagerduty/rest-client.js';
import { envelopeSchema, INCIDENT_STATE_EVENTS, type WebhookEvent } from '../pagerduty/webhook.js';
import type { ApproverCheck } from '../slack/approvers.js';
import type { IncidentChannelFinder } from '../slack/incident-channels.js';
import type { NewJob, NewRun, Store } from '../store/store.js';
import { decideEarlyStart, decidePostmortem, type PostmortemPolicy } from './decision.js';
import { applyIncidentEvent } from './incident.js';
import { finalizeSessionJob, startSessionJob, syncMessageJob, terminateSessionJob } from './jobs.js';
import { type Incident, type PostmortemRun, type RunState, STOPPABLE_STATES } from './model.js';

export interface PostmortemServiceDeps {
  store: Store;
  policy: PostmortemPolicy;
  approvers: ApproverCheck;
  /** Absent when PAGERDUTY_API_TOKEN is not set. */
  pagerduty: PagerDutyClient | undefined;
  /** Present when INCIDENT_CHANNEL_PATTERN is set: a dedicated incident channel wins over the routing. */
  channelFinder?: IncidentChannelFinder | undefined;
  logger: Logger;
  now: () => number;
}

/**
 * What a person's request came to. One place (slack/replies.ts) turns these into words.
 * - done: the run changed (or was opened) as asked
 * - exists: the incident already has a run; nothing new was started
 * - stale: the run was no longer in a state the request applies to (someone else was faster)
 * - not_allowed: the person is not an approver; nothing changed
 * - failed: the request could not be carried out (PagerDuty lookup, approver list), with a reason code
 */
export type Outcome =
  | { kind: 'done'; run: PostmortemRun }
  | { kind: 'exists'; run: PostmortemRun }
  | { kind: 'stale'; run: PostmortemRun | undefined }
  | { kind: 'not_allowed'; approvers: string }
  | { kind: 'failed'; code: string; message: string };

export interface AdHocIncident {
  /** Slack's view ID of the submitted modal: a resubmission of the same modal opens no second run. */
  viewId: string;
  title: string;
  service: string;
  startedAt: string;
  endedAt: string;
  severity: string | null;
  summary: string | null;
  channel: string;
}

/**
 * The postmortem lifecycle as people and PagerDuty drive it: what a resolved incident gets, what each
 * button and command does. Every change is one atomic store transition that also queues its side effects
 * (see run-jobs.ts), so double clicks, retries and restarts cannot fork a run's story.
 */
export class PostmortemService {
  constructor(private readonly deps: PostmortemServiceDeps) {}

  /** Job: fold a stored webhook event into its incident and, on incident.resolved, decide the postmortem. */
  async processEvent(eventId: string): Promise<void> {
    const { store, logger } = this.deps;
    const stored = await store.getEvent(eventId);
    if (!stored) return;
    // The stored body is exactly what PagerDuty sent; read it through the same tolerant schema as at intake.
    const parsed = envelopeSchema.safeParse(JSON.parse(stored.payload));
    if (!parsed.success) return;
    const event: WebhookEvent = { ...parsed.data.event, occurred_at: stored.occurredAt };
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

    if (event.event_type === 'incident.resolved' && incident.status === 'resolved') {
      await this.onResolved(incident, log);
    } else if (incident.status === 'acknowledged' && decideEarlyStart(incident, this.deps.policy)) {
      const decision = decidePostmortem(incident, this.deps.policy);
      if (decision.action === 'never') return;
      const run = newRun(incident, 1, {
        state: 'starting',
        trigger: 'early',
        channel: await this.channelFor(incident, decision.channel),
        decidedBy: null,
        decidedAt: null,
      });
      if (await store.openRun(run, [startSessionJob(run.id)])) {
        log.info({ runId: run.id }, 'early start: Devin gathers evidence while the incident is open');
      }
    }
  }

  /** incident.resolved: an early-start session is told to finish; otherwise the decision opens the run. */
  private async onResolved(incident: Incident, log: Logger): Promise<void> {
    const { store, now } = this.deps;
    const runs = await store.runsForIncident(incident.id);
    const early = runs[0]?.trigger === 'early' && runs.length === 1 ? runs[0] : undefined;
    let attempt = 1;
    let askFirst = false;
    if (early) {
      if (early.finalizeRequestedAt !== null) return;
      if (['starting', 'started', 'needs_input'].includes(early.state)) {
        // The session may move on (starting → started) while we decide: retry the transition from its new
        // state rather than lose the finish message.
        for (let tries = 0; tries < 5; tries++) {
          const current = tries === 0 ? early : await store.getRun(early.id);
          if (!current || !['starting', 'started', 'needs_input'].includes(current.state)) break;
          const finalizing = await store.transitionRun(
            current.id,
            [current.state],
            current.state,
            { finalizeRequestedAt: now(), incident },
            [finalizeSessionJob(current.id), syncMessageJob(current.id)],
            ['finalizeRequestedAt'],
          );
          if (finalizing) {
            log.info({ runId: current.id }, 'incident resolved: early-start session asked to finish');
            return;
          }
          if ((await store.getRun(early.id))?.finalizeRequestedAt !== null) return;
        }
      }
      const latest = await store.getRun(early.id);
      if (!latest || latest.state === 'stopped' || latest.finalizeRequestedAt !== null) return;
      if (['starting', 'started', 'needs_input'].includes(latest.state)) {
        throw new RetryableError('run_busy', 'the early-start run kept changing; trying again');
      }
      // The early start did not work out. If it never created a session, the resolved incident gets its
      // postmortem the usual way; if a session exists (failed, or no longer followed), a person decides.
      log.info({ runId: latest.id, state: latest.state }, 'early start did not work out');
      attempt = latest.attempt + 1;
      askFirst = latest.state !== 'failed';
    }
    const decision = decidePostmortem(incident, this.deps.policy);
    if (decision.action === 'never') {
      log.info({ priority: incident.priority }, 'priority is in the never list: no postmortem, no message');
      return;
    }
    const auto = decision.action === 'auto_start' && !askFirst;
    const run = newRun(incident, attempt, {
      state: auto ? 'starting' : 'awaiting_approval',
      trigger: auto ? 'auto' : 'approval',
      channel: await this.channelFor(incident, decision.channel),
      decidedBy: null,
      decidedAt: null,
    });
    const opened = await store.openRun(run, auto ? [startSessionJob(run.id)] : [syncMessageJob(run.id)]);
    if (opened)
      log.info(
        { runId: run.id, action: decision.action, channel: decision.channel },
        'postmortem run opened',
      );
    else log.info('incident already has a postmortem run; nothing to do');
  }

  /** Approve: one atomic transition, so concurrent clicks start one session. */
  approve(runId: string, userId: string): Promise<Outcome> {
    return this.transition(runId, userId, ['awaiting_approval'], 'starting', true);
  }

  skip(runId: string, userId: string): Promise<Outcome> {
    return this.transition(runId, userId, ['awaiting_approval'], 'skipped', false);
  }

  /** Start anyway, on a skipped run's message. */
  startAnyway(runId: string, userId: string): Promise<Outcome> {
    return this.transition(runId, userId, ['skipped'], 'starting', true);
  }

  /**
   * Retry, on a failed run's message. A run whose session never started tries again with the same run and
   * tag (so an earlier create is found, not repeated); a run whose session failed gets a new attempt.
   */
  async retry(runId: string, userId: string): Promise<Outcome> {
    const run = await this.deps.store.getRun(runId);
    if (run?.state === 'session_failed')
      return this.runAgain(run.incidentId, run.attempt, userId, run.channel);
    return this.transition(runId, userId, ['failed'], 'starting', true);
  }

  /** Stop: a person judges the postmortem unnecessary; the session is terminated and who stopped it recorded. */
  async stop(runId: string, userId: string): Promise<Outcome> {
    const denied = await this.checkApprover(userId);
    if (denied) return denied;
    const run = await this.deps.store.transitionRun(
      runId,
      STOPPABLE_STATES,
      'stopped',
      { stoppedBy: userId },
      [terminateSessionJob(runId), syncMessageJob(runId)],
    );
    if (!run) return { kind: 'stale', run: await this.deps.store.getRun(runId) };
    this.deps.logger.info({ runId, userId }, 'postmortem stopped');
    return { kind: 'done', run };
  }

  /** `/postmortem <incident>`: the person asking is the approval. An incident with a run is not re-run silently. */
  async requestForIncident(ref: string, userId: string, channel: string): Promise<Outcome> {
    const denied = await this.checkApprover(userId);
    if (denied) return denied;
    const { pagerduty, store } = this.deps;
    if (!pagerduty) {
      return {
        kind: 'failed',
        code: 'pagerduty_token_missing',
        message: 'PAGERDUTY_API_TOKEN is not set',
      };
    }
    let incident: Incident;
    try {
      incident = await pagerduty.getIncident(ref);
    } catch (err) {
      if (err instanceof AppError) return { kind: 'failed', code: err.code, message: err.message };
      throw err;
    }
    const latest = (await store.runsForIncident(incident.id)).at(-1);
    if (latest) return { kind: 'exists', run: latest };
    return this.openManualRun(incident, 1, userId, channel);
  }

  /** Run again, offered when an incident already has a run: exactly one new run per click, however many clicks. */
  async runAgain(
    incidentId: string,
    afterAttempt: number,
    userId: string,
    channel: string,
  ): Promise<Outcome> {
    const denied = await this.checkApprover(userId);
    if (denied) return denied;
    const runs = await this.deps.store.runsForIncident(incidentId);
    const latest = runs.at(-1);
    if (!latest) return { kind: 'stale', run: undefined };
    if (latest.attempt > afterAttempt) return { kind: 'exists', run: latest };
    // Still waiting for approval: running it is approving it (a second run beside it would leave live buttons).
    if (latest.state === 'awaiting_approval') return this.approve(latest.id, userId);
    const incident = (await this.deps.store.getIncident(incidentId)) ?? latest.incident;
    return this.openManualRun(incident, afterAttempt + 1, userId, channel);
  }

  /** The /postmortem modal: an incident PagerDuty does not know, described by a person. */
  async startAdHoc(input: AdHocIncident, userId: string): Promise<Outcome> {
    const denied = await this.checkApprover(userId);
    if (denied) return denied;
    const incident: Incident = {
      id: `adhoc-${input.viewId}`,
      number: null,
      title: input.title,
      status: 'resolved',
      serviceId: 'adhoc',
      serviceName: input.service,
      priority: input.severity,
      urgency: null,
      htmlUrl: null,
      createdAt: input.startedAt,
      resolvedAt: input.endedAt,
      resolvedBy: null,
      lastEventAt: input.endedAt,
      source: 'slack',
      summary: input.summary,
    };
    return this.openManualRun(incident, 1, userId, input.channel);
  }

  async recentRuns(limit = 10): Promise<PostmortemRun[]> {
    return this.deps.store.recentRuns(limit);
  }

  /** An incident's runs by ID or number, oldest first. */
  async runsFor(ref: string): Promise<PostmortemRun[]> {
    return /^\d+$/.test(ref)
      ? this.deps.store.runsForIncidentNumber(Number(ref))
      : this.deps.store.runsForIncident(ref);
  }

  /** The incident's own channel (INCIDENT_CHANNEL_PATTERN) if it has one, else the routed channel. */
  private async channelFor(incident: Incident, routed: string): Promise<string> {
    return (await this.deps.channelFinder?.find(incident)) ?? routed;
  }

  private async openManualRun(
    incident: Incident,
    attempt: number,
    userId: string,
    channel: string,
  ): Promise<Outcome> {
    const run = newRun(incident, attempt, {
      state: 'starting',
      trigger: 'manual',
      channel,
      decidedBy: userId,
      decidedAt: this.deps.now(),
    });
    const opened = await this.deps.store.openRun(run, [syncMessageJob(run.id), startSessionJob(run.id)]);
    if (opened) {
      this.deps.logger.info(
        { runId: run.id, incidentId: incident.id, attempt, userId },
        'postmortem requested',
      );
      return { kind: 'done', run: opened };
    }
    const latest = (await this.deps.store.runsForIncident(incident.id)).at(-1);
    return latest ? { kind: 'exists', run: latest } : { kind: 'stale', run: undefined };
  }

  private async transition(
    runId: string,
    userId: string,
    from: RunState[],
    to: RunState,
    startsSession: boolean,
  ): Promise<Outcome> {
    const denied = await this.checkApprover(userId);
    if (denied) return denied;
    const { store, now } = this.deps;
    const jobs: NewJob[] = startsSession
      ? [syncMessageJob(runId), startSessionJob(runId)]
      : [syncMessageJob(runId)];
    const run = await store.transitionRun(
      runId,
      from,
      to,
      { decidedBy: userId, decidedAt: now(), ...(startsSession ? { error: null } : {}) },
      jobs,
    );
    if (!run) return { kind: 'stale', run: await store.getRun(runId) };
    this.deps.logger.info({ runId, userId, from, to }, 'postmortem run changed by a person');
    return { kind: 'done', run };
  }

  private async checkApprover(userId: string): Promise<Outcome | undefined> {
    try {
      if (await this.deps.approvers.isApprover(userId)) return undefined;
      return { kind: 'not_allowed', approvers: this.deps.approvers.describe() };
    } catch (err) {
      if (err instanceof AppError) return { kind: 'failed', code: err.code, message: err.message };
      throw err;
    }
  }
}

function newRun(
  incident: Incident,
  attempt: number,
  decision: Pick<NewRun, 'state' | 'trigger' | 'channel' | 'decidedBy' | 'decidedAt'>,
): NewRun {
  const id = randomUUID();
  return { id, incidentId: incident.id, attempt, ...decision, devinTag: `pm-run-${id}`, incident };
}
