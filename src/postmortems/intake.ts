import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { NewRun, ReceivedEvent, Store } from '../store/store.js';
import { DomainError } from './errors.js';
import { applyIncidentEvent, UNKNOWN_SERVICE_ID } from './incident.js';
import { processEventJob } from './jobs.js';
import { allows, type Lifecycle } from './lifecycle.js';
import type { Incident, PostmortemRun } from './model.js';
import { decideEarlyStart, decidePostmortem, type PostmortemPolicy } from './policy.js';
import type { IncidentChannelLookup, StoredEventReader } from './ports.js';
import { newPromptSecret } from './prompt.js';
import { isBeyondRetention } from './retention.js';

/**
 * Intake of a verified webhook event: stored once by its ID and, for incident events, its processing
 * queued in the incident's lane in the same transaction. Nothing else happens before the answer.
 */
export async function recordEvent(
  store: Store,
  event: ReceivedEvent,
  retention: { now: () => number; retentionMs: number },
): Promise<'recorded' | 'duplicate' | 'expired'> {
  // Events are deleted after the retention period, so an older one could not be told from a new one:
  // it is a replay (PagerDuty itself retries for 48 hours at most), answered 2xx and ignored.
  if (isBeyondRetention(event.occurredAt, retention.now(), retention.retentionMs)) return 'expired';
  return store.recordEvent(event, event.incidentId ? [processEventJob(event.id, event.incidentId)] : []);
}

export interface EventProcessorDeps {
  store: Store;
  lifecycle: Lifecycle;
  policy: PostmortemPolicy;
  readEvent: StoredEventReader;
  /** Present when INCIDENT_CHANNEL_PATTERN is set: a dedicated incident channel wins over the routing. */
  channelFinder?: IncidentChannelLookup | undefined;
  logger: Logger;
  now: () => number;
  /** STORM_WINDOW: resolved incidents of one service within it share one run (0 or unset: off). */
  stormWindowMs?: number;
}

/**
 * What PagerDuty's events do to postmortems, as the job that processes each stored event: the event is
 * folded into its incident; a resolve opens the run its priority calls for (or tells an early-start
 * session to finish); an acknowledgement with an early-start priority opens an early run.
 */
export class EventProcessor {
  constructor(private readonly deps: EventProcessorDeps) {}

  /** Job: fold a stored webhook event into its incident and act on it. */
  async processEvent(eventId: string): Promise<void> {
    const { store, logger } = this.deps;
    const stored = await store.getEvent(eventId);
    if (!stored) return;
    const reading = this.deps.readEvent(stored);
    const log = logger.child({ eventId, eventType: reading.type, incidentId: stored.incidentId });
    if (reading.kind === 'no_action') {
      log.debug('event needs no action');
      return;
    }
    if (reading.kind === 'unusable') {
      log.warn('incident event without usable incident data');
      return;
    }
    const previous = await store.getIncident(reading.event.incident.id);
    const incident = applyIncidentEvent(previous, reading.event);
    if (incident !== previous) await store.saveIncident(incident);

    if (reading.event.kind === 'resolved' && incident.status === 'resolved') {
      await this.onResolved(incident, log);
    } else if (incident.status === 'acknowledged' && decideEarlyStart(incident, this.deps.policy)) {
      const decision = decidePostmortem(incident, this.deps.policy);
      if (decision.action === 'never') return;
      const run = newRun(incident, 1, 'early', await this.channelFor(incident, decision.channel));
      if (await this.deps.lifecycle.open(run)) {
        log.info({ runId: run.id }, 'early start: Devin gathers evidence while the incident is open');
      } else if (!(await this.deps.store.runsForIncident(incident.id)).length) {
        log.info({ runId: run.id }, "no early start: the day's Devin budget is reached");
      }
    }
  }

  /** incident.resolved: an early-start session is told to finish; otherwise the decision opens the run. */
  private async onResolved(incident: Incident, log: Logger): Promise<void> {
    const { store } = this.deps;
    const runs = await store.runsForIncident(incident.id);
    const early = runs[0]?.trigger === 'early' && runs.length === 1 ? runs[0] : undefined;
    let attempt = 1;
    let askFirst = false;
    if (early) {
      const outcome = await this.finalizeEarlyStart(early, incident, log);
      if (outcome === 'done') return;
      // The early start did not work out. If it never created a session, the resolved incident gets its
      // postmortem the usual way; if a session exists (failed, or no longer followed), a person decides.
      log.info({ runId: outcome.id, state: outcome.state }, 'early start did not work out');
      attempt = outcome.attempt + 1;
      askFirst = outcome.state !== 'start_failed';
    }
    const decision = decidePostmortem(incident, this.deps.policy);
    if (decision.action === 'never') {
      log.info({ priority: incident.priority }, 'priority is in the never list: no postmortem, no message');
      return;
    }
    const auto = decision.action === 'auto_start' && !askFirst;
    const run = newRun(
      incident,
      attempt,
      auto ? 'auto' : 'approval',
      await this.channelFor(incident, decision.channel),
    );
    const windowMs = this.deps.stormWindowMs ?? 0;
    // An early start that did not work out keeps to itself: it is that incident's second attempt. An
    // incident without service data is not grouped: 'unknown' is no service, it would lump outages together.
    if (windowMs > 0 && !early && incident.serviceId !== UNKNOWN_SERVICE_ID) {
      await this.openOrJoinGroup(run, incident, windowMs, auto, log);
      return;
    }
    const opened = await this.deps.lifecycle.open(run);
    if (opened) {
      log.info(
        { runId: run.id, action: decision.action, channel: run.channel, state: opened.state },
        'postmortem run opened',
      );
      if (opened.budgetHold) {
        log.warn(
          { runId: run.id, budgetHold: opened.budgetHold },
          "the day's Devin budget is reached: asking for approval instead of starting",
        );
      }
    } else log.info('incident already has a postmortem run; nothing to do');
  }

  /**
   * Asks a live early-start session to finish, once. The session may move on (starting → started) while
   * we decide: the step is tried again from its new state rather than lose the finish message. Returns
   * 'done' when there is nothing more to do, or the run as it ended when the early start did not work out.
   */
  private async finalizeEarlyStart(
    early: PostmortemRun,
    incident: Incident,
    log: Logger,
  ): Promise<'done' | PostmortemRun> {
    const { store, lifecycle, now } = this.deps;
    let current: PostmortemRun | undefined = early;
    for (let tries = 0; ; tries++) {
      if (!current || current.finalizeRequestedAt !== null || current.state === 'stopped') return 'done';
      if (!allows('finalize', current.state)) return current;
      if (tries === 5) throw new DomainError('run_busy', 'the early-start run kept changing; trying again');
      const finalizing = await lifecycle.fire(current.id, 'finalize', {
        expect: current.state,
        patch: { finalizeRequestedAt: now(), incident },
        onlyIfUnset: ['finalizeRequestedAt'],
      });
      if (finalizing) {
        log.info({ runId: current.id }, 'incident resolved: early-start session asked to finish');
        return 'done';
      }
      current = await store.getRun(early.id);
    }
  }

  /**
   * Storms: the resolved incident opens a group for its service, or joins the one whose resolutions it
   * is within the window of (a chain: each joiner extends the window from the group's latest, or earliest,
   * resolution). The group's run, message and session are the first incident's; see lifecycle.ts.
   */
  private async openOrJoinGroup(
    run: Omit<NewRun, 'state'>,
    incident: Incident,
    windowMs: number,
    autoStart: boolean,
    log: Logger,
  ): Promise<void> {
    const now = this.deps.now();
    const resolvedAt = Date.parse(incident.resolvedAt ?? incident.lastEventAt);
    const outcome = await this.deps.lifecycle.openOrJoin(run, {
      serviceId: incident.serviceId,
      resolvedAt: Number.isFinite(resolvedAt) ? resolvedAt : now,
      windowMs,
      autoStart,
      now,
    });
    if (!outcome) {
      log.info('incident already has a postmortem run or a storm group; nothing to do');
    } else if (outcome.outcome === 'opened') {
      log.info(
        { runId: run.id, action: autoStart ? 'auto_start' : 'ask', channel: run.channel },
        'postmortem run opened (a storm group of one)',
      );
    } else {
      log.info(
        { runId: outcome.run.id, from: outcome.from, state: outcome.run.state, members: outcome.members },
        'incident joined the storm group of its service',
      );
    }
  }

  /** The incident's own channel (INCIDENT_CHANNEL_PATTERN) if it has one, else the routed channel. */
  private async channelFor(incident: Incident, routed: string): Promise<string> {
    return (await this.deps.channelFinder?.find(incident)) ?? routed;
  }
}

export function newRun(
  incident: Incident,
  attempt: number,
  trigger: NewRun['trigger'],
  channel: string,
  decidedBy: { userId: string; at: number } | null = null,
): Omit<NewRun, 'state'> {
  const id = randomUUID();
  return {
    id,
    incidentId: incident.id,
    attempt,
    trigger,
    channel,
    decidedBy: decidedBy?.userId ?? null,
    decidedAt: decidedBy?.at ?? null,
    devinTag: `pm-run-${id}`,
    promptSecret: newPromptSecret(),
    incident,
  };
}
