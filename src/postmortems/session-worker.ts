import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { Job, Store } from '../store/store.js';
import { DomainError, isDomainError, isRetryable, isSessionApiCode, outcomeUnknown } from './errors.js';
import { newRun } from './intake.js';
import { appendIncidentsJob, syncMessageJob, terminateSessionJob } from './jobs.js';
import { FOLLOWED_STATES, GROUP_PENDING_STATES, type Lifecycle } from './lifecycle.js';
import type { PostmortemRun, StormMember } from './model.js';
import { decidePostmortem, type PostmortemPolicy, routeOf } from './policy.js';
import type { EvidenceSource, Session, SessionApi } from './ports.js';
import {
  buildFinalizeMessage,
  buildSessionRequest,
  fitStormPart,
  newPromptSecret,
  type PromptContext,
  renderStormPart,
  type SessionSettings,
  STORM_MESSAGE_BUDGET_CHARS,
  type StormIncident,
  type StormPromptPart,
  stormEntrySize,
  stormRoom,
} from './prompt.js';
import type { PromptTemplate } from './template.js';

export interface SessionWorkerDeps {
  store: Store;
  lifecycle: Lifecycle;
  sessions: SessionApi;
  evidence: EvidenceSource;
  policy: PostmortemPolicy;
  session: SessionSettings;
  prompt: { template: PromptTemplate | undefined; destination: string };
  logger: Logger;
  now: () => number;
  /** How long Devin may stay unreachable before a run's start is marked failed. */
  giveUpAfterMs: number;
  /** After a create with an unknown outcome, how long to keep looking its tag up before creating again. */
  reconcileWindowMs: number;
}

/**
 * The Devin side of a run, as jobs: creating its session exactly once, telling an early-start session
 * to finish, terminating a stopped one. Every method is idempotent: the queue may run it again after a
 * crash.
 */
export class SessionWorker {
  constructor(private readonly deps: SessionWorkerDeps) {}

  /**
   * Job: create the run's Devin session, exactly once (Devin v3 has no idempotency key).
   *
   * The invariant: a run has at most one Devin session, however often this job runs, crashes or races.
   * It rests on five things, all here or named here:
   * 1. State guard: only a run in `starting` creates, and `session_created` moves it on atomically.
   * 2. Intent first: `createAttemptedAt` is written before every create call.
   * 3. The run's unique tag (`devinTag`, a unique column) is on the session; after an intent whose
   *    outcome is unknown (a timeout, a 5xx) the tag is looked up before anything is created again, and
   *    looked up patiently (`reconcileWindowMs`): Devin may list a slow create late.
   * 4. Lane order: all Devin jobs of one run run one at a time (jobs.ts), so two creates never overlap.
   * 5. A create Devin refused, or that never left, clears the intent: there is nothing to find.
   */
  async startSession(runId: string, job: Job): Promise<void> {
    const { store, logger } = this.deps;
    const run = await store.getRun(runId);
    if (run?.state !== 'starting') return;
    const log = logger.child({ runId, incidentId: run.incidentId, devinTag: run.devinTag });
    let session: Session;
    let inPrompt: string[];
    try {
      ({ session, inPrompt } = await this.createOnce(run, log));
    } catch (err) {
      await this.startFailed(run, job, err, log);
      return;
    }
    await store.updateRun(runId, { devinSessionId: session.id, devinUrl: session.url });
    // Storms: the incidents in the prompt reached the session; any other joiner follows in a message.
    await store.markStormDelivered(runId, inPrompt, this.deps.now());
    const started = await this.deps.lifecycle.fire(runId, 'session_created', {
      patch: { sessionStartedAt: this.deps.now(), devinStatus: session.status },
    });
    if (started && (await this.undelivered(started)).length > 0) {
      await store.enqueueJob(appendIncidentsJob(runId));
    }
    if (!started && (await store.getRun(runId))?.state === 'stopped') {
      // Stop was pressed while the create was in flight: the new session must not run on.
      await store.enqueueJob(terminateSessionJob(runId));
    }
  }

  /** The session, and the storm incidents its prompt carried (unknown for one an earlier attempt made). */
  private async createOnce(
    run: PostmortemRun,
    log: Logger,
  ): Promise<{ session: Session; inPrompt: string[] }> {
    const { store, sessions, now } = this.deps;
    if (run.createAttemptedAt !== null) {
      const found = await sessions.findByTag(run.devinTag);
      if (found) {
        log.info({ sessionId: found.id }, 'found the session an earlier attempt created');
        // The storm incidents that attempt's prompt carried were stored with its intent.
        const carried = (await store.stormMembers(run.id)).filter((m) => m.inPromptAt !== null);
        return { session: found, inPrompt: [run.incidentId, ...carried.map((m) => m.incident.id)] };
      }
      if (now() - run.createAttemptedAt < this.deps.reconcileWindowMs) {
        throw new DomainError(
          'create_unconfirmed',
          'an earlier create may still appear; looking again before creating',
          { retryAfterMs: Math.min(30_000, this.deps.reconcileWindowMs / 4) },
        );
      }
    }
    const context = await this.promptContext(run);
    const settings = this.sessionSettings(run);
    const options = { earlyStart: run.trigger === 'early' && run.finalizeRequestedAt === null };
    // The main incident's prompt first; the group's other incidents get the room it leaves, the rest
    // follow in messages.
    const members = await store.stormMembers(run.id);
    const others = members.filter((m) => m.incident.id !== run.incidentId);
    let storm: StormPromptPart | undefined;
    if (others.length > 0) {
      const part: StormPromptPart = {
        serviceName: run.incident.serviceName,
        groupSize: members.length,
        incidents: [],
        kind: 'prompt',
      };
      // The main prompt as it is with a storm part (none of the part fits in an empty one).
      const main = buildSessionRequest(context, settings, { ...options, storm: part }).prompt.length;
      const room = stormRoom(main);
      const incidents = room > 0 ? await this.packStorm(run, others, room) : [];
      storm = fitStormPart(main, { ...part, incidents }, context.promptSecret);
    }
    const request = buildSessionRequest(context, settings, storm ? { ...options, storm } : options);
    const inPrompt = (storm?.incidents ?? []).map((p) => p.incident.id);
    // With the intent, which incidents its prompt carries: a session found by its tag later has them.
    if (members.length > 0) await store.markStormInPrompt(run.id, inPrompt, now());
    await store.updateRun(run.id, { createAttemptedAt: now() });
    try {
      const session = await sessions.create(request);
      log.info({ sessionId: session.id, stormIncidents: members.length }, 'Devin session created');
      return { session, inPrompt: [run.incidentId, ...inPrompt] };
    } catch (err) {
      // Devin said no, or never got the request: nothing to reconcile next time.
      if (isDomainError(err) && isSessionApiCode(err.code) && !outcomeUnknown(err.code)) {
        await store.updateRun(run.id, { createAttemptedAt: null });
      }
      throw err;
    }
  }

  /** A retryable failure waits (and the channel sees the run is waiting); anything else fails the start. */
  private async startFailed(run: PostmortemRun, job: Job, err: unknown, log: Logger): Promise<void> {
    const retryable = isDomainError(err) && isRetryable(err);
    if (retryable && this.deps.now() - job.createdAt < this.deps.giveUpAfterMs) {
      log.warn(
        { err: errorMessage(err), attempt: job.attempts },
        'Devin session not created yet; will retry',
      );
      // Let the channel see that the run is waiting, not lost, once the Slack message exists or is due.
      if (job.attempts === 1) await this.deps.store.enqueueJob(syncMessageJob(run.id));
      throw err;
    }
    const reason = retryable
      ? `Devin was unreachable for too long (${errorMessage(err)})`
      : isDomainError(err)
        ? err.message
        : `unexpected error: ${errorMessage(err)}`;
    log.error({ err: errorMessage(err) }, 'Devin session could not be started');
    await this.deps.lifecycle.fire(run.id, 'start_refused', { patch: { error: reason } });
  }

  /** Job: tell an early-start session that the incident resolved, so it writes the postmortem now. */
  async finalizeSession(runId: string): Promise<void> {
    const { store, sessions, logger, lifecycle } = this.deps;
    const run = await store.getRun(runId);
    if (!run?.devinSessionId || !FOLLOWED_STATES.includes(run.state)) return;
    try {
      // Fresh evidence: the incident has run its course since the early start.
      const evidence = await this.deps.evidence.gather(run);
      await store.updateRun(runId, { evidence });
      await sessions.sendMessage(
        run.devinSessionId,
        buildFinalizeMessage(this.context({ ...run, evidence }, await this.promptSecret(run))),
      );
      await store.updateRun(runId, { finalizeSentAt: this.deps.now() });
      await store.enqueueJob(syncMessageJob(runId));
      logger.info(
        { runId, incidentId: run.incidentId },
        'asked the early-start session to finish the postmortem',
      );
    } catch (err) {
      if (isDomainError(err) && isRetryable(err)) throw err;
      await lifecycle.fire(runId, 'session_failed', {
        expect: run.state,
        patch: { error: `Devin did not accept the message to finish the postmortem: ${errorMessage(err)}` },
      });
    }
  }

  /**
   * Job (storms): the group's incidents that have not reached its session yet are sent to it as
   * follow-up messages, each incident with its evidence, as many per message as its budget allows. Only
   * while the session is followed; a group that is not started yet gets them all in its first prompt.
   */
  async appendIncidents(runId: string): Promise<void> {
    const { store, sessions, logger, now } = this.deps;
    const run = await store.getRun(runId);
    if (!run) return;
    let pending = await this.undelivered(run);
    if (pending.length === 0) return;
    const log = logger.child({ runId, incidentId: run.incidentId });
    if (!run.devinSessionId || !FOLLOWED_STATES.includes(run.state)) {
      // Still to be decided or created: that session's first prompt carries them.
      if (GROUP_PENDING_STATES.includes(run.state)) return;
      await this.regroup(run, pending, `the group's run is ${run.state}`, log);
      return;
    }
    const secret = await this.promptSecret(run);
    const groupSize = (await store.stormMembers(runId)).length;
    while (pending.length > 0) {
      const packed = await this.packStorm(run, pending, STORM_MESSAGE_BUDGET_CHARS);
      const batch =
        packed.length > 0 ? packed : [{ incident: (pending[0] as StormMember).incident, evidence: null }];
      const message = renderStormPart(
        {
          serviceName: run.incident.serviceName,
          groupSize,
          incidents: batch,
          kind: { message: batch.map((b) => b.incident.id).join(',') },
        },
        secret,
      );
      try {
        await sessions.sendMessage(run.devinSessionId, message);
      } catch (err) {
        // Devin will take it later: the job is retried. Refused (the session is gone, or takes no more
        // messages): those incidents get a group, and a decision, of their own.
        if (isDomainError(err) && isRetryable(err)) throw err;
        await this.regroup(run, pending, `Devin refused the message: ${errorMessage(err)}`, log);
        return;
      }
      const ids = batch.map((b) => b.incident.id);
      await store.markStormDelivered(runId, ids, now());
      logger.info(
        { runId, incidentId: run.incidentId, incidents: ids.length },
        'storm: incidents that joined the group sent to its session',
      );
      pending = pending.filter((m) => !ids.includes(m.incident.id));
    }
  }

  /**
   * Storms: incidents that joined a group but can no longer reach its session move, in one store
   * transaction, into a new group of their own, decided by policy as any resolved incident is: it starts
   * at once if one of them has an auto-start priority, else its channel is asked.
   */
  private async regroup(run: PostmortemRun, pending: StormMember[], why: string, log: Logger): Promise<void> {
    const { store, policy, lifecycle } = this.deps;
    const first = pending[0] as StormMember;
    const decisions = pending.map((m) => decidePostmortem(m.incident, policy));
    const auto = decisions.some((d) => d.action === 'auto_start');
    const attempt = ((await store.runsForIncident(first.incident.id)).at(-1)?.attempt ?? 0) + 1;
    const channel = (decisions[0] ?? decidePostmortem(first.incident, policy)).channel;
    const next = newRun(first.incident, attempt, auto ? 'auto' : 'approval', channel);
    const opened = await lifecycle.regroup(next, {
      runId: run.id,
      incidentIds: pending.map((m) => m.incident.id),
      undeliveredOnly: true,
    });
    if (opened) {
      log.warn(
        { newRunId: opened.id, incidents: pending.length, state: opened.state, why },
        'storm: incidents that could not reach the group session form a group of their own',
      );
    }
  }

  /** The group's incidents other than the run's own that have not reached its session. */
  private async undelivered(run: PostmortemRun): Promise<StormMember[]> {
    return (await this.deps.store.stormMembers(run.id)).filter(
      (m) => m.deliveredAt === null && m.incident.id !== run.incidentId,
    );
  }

  /** As many of `members` as fit in `budget` characters, in order, each with its evidence gathered. */
  private async packStorm(
    run: PostmortemRun,
    members: readonly StormMember[],
    budget: number,
  ): Promise<StormIncident[]> {
    const packed: StormIncident[] = [];
    let used = 1_500; // the part's instructions and markers
    for (const member of members) {
      const entry: StormIncident = {
        incident: member.incident,
        evidence: await this.deps.evidence.gather({ ...run, incident: member.incident, evidence: null }),
      };
      const size = stormEntrySize(entry);
      if (used + size > budget) break;
      packed.push(entry);
      used += size;
    }
    return packed;
  }

  /** Job: terminate a stopped run's session (one Devin no longer has counts as terminated). */
  async terminateSession(runId: string): Promise<void> {
    const { store, sessions, logger } = this.deps;
    const run = await store.getRun(runId);
    if (!run) return;
    // A create whose answer never came may still have made a session: find it by the run's tag.
    const sessionId =
      run.devinSessionId ??
      (run.createAttemptedAt !== null ? (await sessions.findByTag(run.devinTag))?.id : undefined);
    if (!sessionId) return;
    await sessions.terminate(sessionId);
    logger.info({ runId, incidentId: run.incidentId, sessionId }, 'Devin session terminated');
  }

  /** The run's prompt inputs; evidence is gathered once and kept, so retries send the same prompt. */
  private async promptContext(run: PostmortemRun): Promise<PromptContext> {
    let evidence = run.evidence;
    if (!evidence) {
      evidence = await this.deps.evidence.gather(run);
      await this.deps.store.updateRun(run.id, { evidence });
    }
    return this.context({ ...run, evidence }, await this.promptSecret(run));
  }

  /** The run's prompt secret; a run opened before there was one gets it now, kept for later prompts. */
  private async promptSecret(run: PostmortemRun): Promise<string> {
    if (run.promptSecret) return run.promptSecret;
    const secret = newPromptSecret();
    await this.deps.store.updateRun(run.id, { promptSecret: secret });
    return secret;
  }

  private context(run: PostmortemRun, promptSecret: string): PromptContext {
    const route = this.route(run);
    return {
      incident: run.incident,
      runTag: run.devinTag,
      promptSecret,
      evidence: run.evidence,
      destination: route.destination ?? this.deps.prompt.destination,
      template: route.template ?? this.deps.prompt.template,
    };
  }

  private route(run: PostmortemRun) {
    return routeOf(this.deps.policy, run.incident);
  }

  private sessionSettings(run: PostmortemRun): SessionSettings {
    const route = this.route(run);
    return {
      ...this.deps.session,
      playbookId: route.playbookId ?? this.deps.session.playbookId,
      knowledgeIds: route.knowledgeIds ?? this.deps.session.knowledgeIds,
      repos: route.repos ?? this.deps.session.repos,
    };
  }
}
