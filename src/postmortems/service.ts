import type { Logger } from 'pino';
import type { Store } from '../store/store.js';
import type { BudgetUsage, SessionBudget } from './budget.js';
import {
  type ApproverCode,
  type IncidentSourceCode,
  isDomainError,
  isIncidentSourceError,
} from './errors.js';
import { newRun } from './intake.js';
import type { Lifecycle, RunEvent } from './lifecycle.js';
import type { Incident, PostmortemRun, StormMember } from './model.js';
import type { ApproverCheck, Authorization, IncidentSource } from './ports.js';

export interface PostmortemServiceDeps {
  store: Store;
  lifecycle: Lifecycle;
  approvers: ApproverCheck;
  /** Absent when PAGERDUTY_API_TOKEN is not set. */
  incidents: IncidentSource | undefined;
  logger: Logger;
  now: () => number;
  /** The daily budget and concurrency cap: `/postmortem status` shows today's use. */
  budget?: SessionBudget | undefined;
}

/** The failures a person's request can meet; slack/replies.ts says each in words. */
export type RequestFailureCode = IncidentSourceCode | ApproverCode;

/**
 * What a person's request came to. One place (slack/replies.ts) turns these into words.
 * - done: the run changed (or was opened) as asked
 * - exists: the incident already has a run; nothing new was started
 * - stale: the run was no longer in a state the request applies to (someone else was faster)
 * - not_allowed: the person may not spend (not an approver, a guest, from outside); nothing changed
 * - failed: the request could not be carried out (PagerDuty lookup, approver list), with a reason code
 */
export type Outcome =
  | { kind: 'done'; run: PostmortemRun }
  | { kind: 'exists'; run: PostmortemRun }
  | { kind: 'stale'; run: PostmortemRun | undefined }
  | { kind: 'not_allowed'; reason: DenialReason; approvers: string }
  | { kind: 'failed'; code: RequestFailureCode; message: string };

export type DenialReason = Extract<Authorization, { allowed: false }>['reason'];

/** What `/postmortem status` asks for: this channel's runs, every run (approvers), or one incident's. */
export type StatusScope = { kind: 'channel' } | { kind: 'all' } | { kind: 'incident'; ref: string };

export type StatusView =
  | {
      kind: 'runs';
      scope: StatusScope;
      runs: PostmortemRun[];
      /** Runs of that incident reported in other channels, which only approvers see. */
      hiddenElsewhere: number;
      /** Jobs given up for good, waiting for an operator (npm run jobs): a warning line when any. */
      deadJobs: number;
      /** Today's use of the session budget and slots (budget.ts). */
      usage?: BudgetUsage | undefined;
    }
  | Extract<Outcome, { kind: 'not_allowed' | 'failed' }>;

/** What the Home tab shows a person: recent runs (for those who may decide them) and the queue's health. */
export interface HomeView {
  /** The newest runs of every channel; undefined when the person may not see other channels' runs. */
  runs: PostmortemRun[] | undefined;
  deadJobs: number;
}

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
 * What people can ask of postmortems, from Slack: what each button and command does. Every change is
 * one lifecycle step (lifecycle.ts), an atomic write that queues its side effects, so double clicks,
 * retries and restarts cannot fork a run's story. What PagerDuty's events do is in intake.ts.
 */
export class PostmortemService {
  constructor(private readonly deps: PostmortemServiceDeps) {}

  /** Approve: one atomic transition, so concurrent clicks start one session. */
  approve(runId: string, userId: string): Promise<Outcome> {
    return this.decide(runId, userId, 'approve');
  }

  skip(runId: string, userId: string): Promise<Outcome> {
    return this.decide(runId, userId, 'skip');
  }

  /** Start anyway, on a skipped run's message. */
  startAnyway(runId: string, userId: string): Promise<Outcome> {
    return this.decide(runId, userId, 'start_anyway');
  }

  /**
   * Retry, on a failed run's message. A run whose session never started tries again with the same run and
   * tag (so an earlier create is found, not repeated); a run whose session failed gets a new attempt.
   */
  async retry(runId: string, userId: string): Promise<Outcome> {
    const run = await this.deps.store.getRun(runId);
    if (run?.state === 'session_failed')
      return this.runAgain(run.incidentId, run.attempt, userId, run.channel);
    return this.decide(runId, userId, 'retry_start');
  }

  /** Stop: a person judges the postmortem unnecessary; the session is terminated and who stopped it recorded. */
  async stop(runId: string, userId: string): Promise<Outcome> {
    const denied = await this.mayStart(userId);
    if (denied) return denied;
    const run = await this.deps.lifecycle.fire(runId, 'stop', { patch: { stoppedBy: userId } });
    if (!run) return { kind: 'stale', run: await this.deps.store.getRun(runId) };
    this.deps.logger.info({ runId, incidentId: run.incidentId, userId }, 'postmortem stopped');
    return { kind: 'done', run };
  }

  /** `/postmortem <incident>`: the person asking is the approval. An incident with a run is not re-run silently. */
  async requestForIncident(ref: string, userId: string, channel: string): Promise<Outcome> {
    const denied = await this.mayStart(userId);
    if (denied) return denied;
    const { incidents, store } = this.deps;
    if (!incidents) {
      return { kind: 'failed', code: 'incident_source_missing', message: 'PAGERDUTY_API_TOKEN is not set' };
    }
    let incident: Incident;
    try {
      incident = await incidents.getIncident(ref);
    } catch (err) {
      if (isIncidentSourceError(err)) return { kind: 'failed', code: err.code, message: err.message };
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
    const denied = await this.mayStart(userId);
    if (denied) return denied;
    const runs = await this.deps.store.runsForIncident(incidentId);
    const latest = runs.at(-1);
    if (!latest) return { kind: 'stale', run: undefined };
    if (latest.attempt > afterAttempt) return { kind: 'exists', run: latest };
    // Still waiting for approval: running it is approving it (a second run beside it would leave live buttons).
    if (latest.state === 'awaiting_approval') return this.approve(latest.id, userId);
    const incident = (await this.deps.store.getIncident(incidentId)) ?? latest.incident;
    // A storm group whose session failed: the new attempt is the whole group's, its incidents moved to it
    // (in the same transaction) to be told to its session again.
    const members = latest.state === 'session_failed' ? await this.deps.store.stormMembers(latest.id) : [];
    if (members.length > 1) return this.openManualGroup(latest, incident, members, userId, channel);
    return this.openManualRun(incident, afterAttempt + 1, userId, channel);
  }

  private async openManualGroup(
    failed: PostmortemRun,
    incident: Incident,
    members: readonly StormMember[],
    userId: string,
    channel: string,
  ): Promise<Outcome> {
    const run = newRun(incident, failed.attempt + 1, 'manual', channel, { userId, at: this.deps.now() });
    const opened = await this.deps.lifecycle.regroup(run, {
      runId: failed.id,
      incidentIds: members.map((m) => m.incident.id),
      undeliveredOnly: false,
    });
    if (opened) {
      this.deps.logger.info(
        { runId: run.id, incidentId: incident.id, attempt: run.attempt, userId, incidents: members.length },
        'postmortem requested again for a storm group',
      );
      return { kind: 'done', run: opened };
    }
    const latest = (await this.deps.store.runsForIncident(incident.id)).at(-1);
    return latest ? { kind: 'exists', run: latest } : { kind: 'stale', run: undefined };
  }

  /** The /postmortem modal: an incident PagerDuty does not know, described by a person. */
  async startAdHoc(input: AdHocIncident, userId: string): Promise<Outcome> {
    const denied = await this.mayStart(userId);
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

  /**
   * `/postmortem status`, typed in `channel`. Runs are shown where they were reported: the channel's own,
   * or, for approvers, every channel's (`status all`, or an incident reported elsewhere).
   */
  async status(userId: string, channel: string, scope: StatusScope, limit = 10): Promise<StatusView> {
    const view = await this.statusRuns(userId, channel, scope, limit);
    // Today's use goes with the lists (a channel's runs, every run), not with one incident's runs.
    if (view.kind !== 'runs' || scope.kind === 'incident') return view;
    return { ...view, usage: await this.deps.budget?.usage() };
  }

  private async statusRuns(
    userId: string,
    channel: string,
    scope: StatusScope,
    limit: number,
  ): Promise<StatusView> {
    const { store } = this.deps;
    const deadJobs = (await store.countJobs()).dead;
    if (scope.kind === 'channel') {
      const runs = await store.recentRuns(limit, { channel });
      return { kind: 'runs', scope, runs, hiddenElsewhere: 0, deadJobs };
    }
    if (scope.kind === 'all') {
      const denied = await this.mayStart(userId);
      if (denied) return denied;
      return { kind: 'runs', scope, runs: await store.recentRuns(limit), hiddenElsewhere: 0, deadJobs };
    }
    const runs = /^\d+$/.test(scope.ref)
      ? await store.runsForIncidentNumber(Number(scope.ref))
      : await store.runsForIncident(scope.ref);
    const here = runs.filter((r) => r.channel === channel);
    if (here.length === runs.length) return { kind: 'runs', scope, runs, hiddenElsewhere: 0, deadJobs };
    const denied = await this.mayStart(userId);
    return denied === undefined
      ? { kind: 'runs', scope, runs, hiddenElsewhere: 0, deadJobs }
      : { kind: 'runs', scope, runs: here, hiddenElsewhere: runs.length - here.length, deadJobs };
  }

  /**
   * The Home tab: every channel's newest runs for those who may decide postmortems (as `status all`),
   * none for others; the dead-job count for everyone.
   */
  async home(userId: string, limit = 15): Promise<HomeView> {
    const { store } = this.deps;
    const deadJobs = (await store.countJobs()).dead;
    const denied = await this.mayStart(userId);
    return { runs: denied ? undefined : await store.recentRuns(limit), deadJobs };
  }

  private async openManualRun(
    incident: Incident,
    attempt: number,
    userId: string,
    channel: string,
  ): Promise<Outcome> {
    const run = newRun(incident, attempt, 'manual', channel, { userId, at: this.deps.now() });
    const opened = await this.deps.lifecycle.open(run);
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

  /** A person's decision on a run's message: one lifecycle step, so concurrent clicks decide once. */
  private async decide(
    runId: string,
    userId: string,
    event: Extract<RunEvent, 'approve' | 'skip' | 'start_anyway' | 'retry_start'>,
  ): Promise<Outcome> {
    const denied = await this.mayStart(userId);
    if (denied) return denied;
    const { lifecycle, store, now } = this.deps;
    const startsSession = event !== 'skip';
    // A start its priority called for, held because the day's budget was reached: starting it anyway is
    // the explicit override, recorded with who (the hold itself never changes once the run is born).
    const held = startsSession && event !== 'retry_start' ? (await store.getRun(runId))?.budgetHold : null;
    const run = await lifecycle.fire(runId, event, {
      patch: {
        decidedBy: userId,
        decidedAt: now(),
        ...(startsSession ? { error: null } : {}),
        ...(held ? { budgetOverrideBy: userId } : {}),
      },
    });
    if (!run) return { kind: 'stale', run: await store.getRun(runId) };
    this.deps.logger.info(
      { runId, incidentId: run.incidentId, userId, event, to: run.state },
      'postmortem run changed by a person',
    );
    if (held) {
      this.deps.logger.warn(
        { runId, incidentId: run.incidentId, userId, budgetHold: held, to: run.state },
        "postmortem started over the day's Devin budget: override by a person",
      );
    }
    return { kind: 'done', run };
  }

  /**
   * Whether the person may spend (start, approve, retry, run again, stop): undefined when they may, else
   * the outcome to tell them. The modal asks this before it opens.
   */
  async mayStart(userId: string): Promise<Extract<Outcome, { kind: 'not_allowed' | 'failed' }> | undefined> {
    try {
      const auth = await this.deps.approvers.authorize(userId);
      if (auth.allowed) return undefined;
      this.deps.logger.info({ userId, reason: auth.reason }, 'refused: may not start or decide postmortems');
      return { kind: 'not_allowed', reason: auth.reason, approvers: this.deps.approvers.describe() };
    } catch (err) {
      if (isDomainError(err, 'approvers_unavailable')) {
        return { kind: 'failed', code: err.code, message: err.message };
      }
      throw err;
    }
  }
}
