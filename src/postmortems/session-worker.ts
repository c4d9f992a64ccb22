import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { Job, Store } from '../store/store.js';
import { DomainError, isDomainError, isRetryable, isSessionApiCode, outcomeUnknown } from './errors.js';
import { appendIncidentsJob, syncMessageJob, terminateSessionJob } from './jobs.js';
import { FOLLOWED_STATES, type Lifecycle } from './lifecycle.js';
import type { PostmortemRun, StormMember } from './model.js';
import { type PostmortemPolicy, routeOf } from './policy.js';
import type { EvidenceSource, Session, SessionApi } from './ports.js';
import {
  buildFinalizeMessage,
  buildSessionRequest,
  newPromptSecret,
  type PromptContext,
  renderStormPart,
  type SessionSettings,
  STORM_MESSAGE_BUDGET_CHARS,
  STORM_PART_BUDGET_CHARS,
  type StormIncident,
  stormEntrySize,
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
        // Which storm incidents that prompt carried is not known: they are sent again, to be sure.
        return { session: found, inPrompt: [run.incidentId] };
      }
      if (now() - run.createAttemptedAt < this.deps.reconcileWindowMs) {
        throw new DomainError(
          'create_unconfirmed',
          'an earlier create may still appear; looking again before creating',
          { retryAfterMs: Math.min(30_000, this.deps.reconcileWindowMs / 4) },
        );
      }
    }
    await store.updateRun(run.id, { createAttemptedAt: now() });
    try {
      const context = await this.promptContext(run);
      const members = await store.stormMembers(run.id);
      const others = members.filter((m) => m.incident.id !== run.incidentId);
      const packed = others.length > 0 ? await this.packStorm(run, others, STORM_PART_BUDGET_CHARS) : [];
      const request = buildSessionRequest(context, this.sessionSettings(run), {
        earlyStart: run.trigger === 'early' && run.finalizeRequestedAt === null,
        ...(others.length > 0
          ? {
              storm: {
                serviceName: run.incident.serviceName,
                groupSize: members.length,
                incidents: packed,
                kind: 'prompt' as const,
              },
            }
          : {}),
      });
      const session = await sessions.create(request);
      log.info({ sessionId: session.id, stormIncidents: members.length }, 'Devin session created');
      return { session, inPrompt: [run.incidentId, ...packed.map((p) => p.incident.id)] };
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
    if (!run?.devinSessionId || !FOLLOWED_STATES.includes(run.state)) return;
    let pending = await this.undelivered(run);
    if (pending.length === 0) return;
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
      await sessions.sendMessage(run.devinSessionId, message);
      const ids = batch.map((b) => b.incident.id);
      await store.markStormDelivered(runId, ids, now());
      logger.info(
        { runId, incidentId: run.incidentId, incidents: ids.length },
        'storm: incidents that joined the group sent to its session',
      );
      pending = pending.filter((m) => !ids.includes(m.incident.id));
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
