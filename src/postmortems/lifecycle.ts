import type { NewJob, NewRun, RunPatch, Store, StormJoin, StormOutcome } from '../store/store.js';
import { LifecycleBug } from './errors.js';
import {
  appendIncidentsJob,
  finalizeSessionJob,
  pagerDutyNoteJob,
  startSessionJob,
  syncMessageJob,
  terminateSessionJob,
  threadReplyJob,
} from './jobs.js';
import {
  type PostmortemRun,
  RUN_STATES,
  type RunState,
  type RunTrigger,
  type ThreadReplyKind,
} from './model.js';

/**
 * A postmortem run's life, declared once. Every state a run can be in, how it is born, every event
 * that moves it (from which states, to which state) and the jobs each step queues. The code never
 * writes a from → to pair of its own: it fires an event, and `Lifecycle` turns it into one conditional
 * store write that queues the declared jobs in the same transaction. An event fired from a state it is
 * not declared for is a bug and throws; an event that lost a race (someone else moved the run first)
 * changes nothing and says so by returning undefined.
 */

/** What a state means, for the README diagram and for people reading the table. */
export const STATE_MEANING: Record<RunState, string> = {
  awaiting_approval: 'asked in Slack: Approve / Skip',
  skipped: 'a person skipped it (Start anyway stays possible)',
  expired: 'nobody decided in time',
  starting: 'creating the Devin session (exactly once)',
  start_failed: 'the session could not be created (Retry)',
  started: 'Devin is working',
  needs_input: 'Devin waits for a person',
  finished: 'postmortem PR and summary posted',
  session_failed: 'the session ended in an error or a limit',
  stopped: 'a person pressed Stop',
  abandoned: 'followed too long: terminated, no longer followed',
};

/** A job a step queues, by name; `reply` adds a thread reply of that kind. */
type JobSpec =
  | 'start_session'
  | 'sync_message'
  | 'terminate_session'
  | 'finalize_session'
  | 'pagerduty_note'
  | 'append_incidents'
  | { reply: ThreadReplyKind };

interface Birth {
  state: RunState;
  jobs: readonly JobSpec[];
}

/** How a run is born, by what triggered it. */
export const BIRTHS: Record<RunTrigger, Birth> = {
  /** Resolved, priority not in the auto-start set: the channel is asked first. */
  approval: { state: 'awaiting_approval', jobs: ['sync_message'] },
  /** Resolved with an auto-start priority: the session starts at once; its message follows it. */
  auto: { state: 'starting', jobs: ['start_session'] },
  /** Acknowledged with an early-start priority: gather evidence while the incident is open. */
  early: { state: 'starting', jobs: ['start_session'] },
  /** A person asked (`/postmortem`, Run again, Retry of a failed session): the asking is the approval. */
  manual: { state: 'starting', jobs: ['sync_message', 'start_session'] },
};

interface Transition {
  from: readonly RunState[];
  /** The state after the step; 'same' keeps the run where it is (bookkeeping that must happen once). */
  to: RunState | 'same';
  jobs: readonly JobSpec[];
}

const FOLLOWED = ['started', 'needs_input'] as const satisfies readonly RunState[];
const LIVE = ['starting', ...FOLLOWED] as const satisfies readonly RunState[];

export const TRANSITIONS = {
  // People, in Slack.
  approve: { from: ['awaiting_approval'], to: 'starting', jobs: ['sync_message', 'start_session'] },
  skip: { from: ['awaiting_approval'], to: 'skipped', jobs: ['sync_message'] },
  start_anyway: { from: ['skipped'], to: 'starting', jobs: ['sync_message', 'start_session'] },
  retry_start: { from: ['start_failed'], to: 'starting', jobs: ['sync_message', 'start_session'] },
  stop: { from: LIVE, to: 'stopped', jobs: ['terminate_session', 'sync_message'] },
  // Time, while an approval waits.
  remind: { from: ['awaiting_approval'], to: 'same', jobs: [{ reply: 'reminder' }] },
  expire: { from: ['awaiting_approval'], to: 'expired', jobs: ['sync_message'] },
  // Creating the session.
  session_created: { from: ['starting'], to: 'started', jobs: ['sync_message'] },
  start_refused: { from: ['starting'], to: 'start_failed', jobs: ['sync_message'] },
  /** An early start's incident resolved: tell the session to write the postmortem now. */
  finalize: { from: LIVE, to: 'same', jobs: ['finalize_session', 'sync_message'] },
  // Following the session.
  session_working: { from: ['needs_input'], to: 'started', jobs: ['sync_message'] },
  session_needs_input: {
    from: ['started'],
    to: 'needs_input',
    jobs: ['sync_message', { reply: 'needs_input' }],
  },
  session_finished: {
    from: FOLLOWED,
    to: 'finished',
    jobs: ['sync_message', { reply: 'finished' }, 'pagerduty_note'],
  },
  session_failed: {
    from: FOLLOWED,
    to: 'session_failed',
    jobs: ['sync_message', { reply: 'session_failed' }],
  },
  /** Followed too long: the session is terminated too, or it would go on consuming ACUs unwatched. */
  give_up: {
    from: FOLLOWED,
    to: 'abandoned',
    jobs: ['terminate_session', 'sync_message', { reply: 'abandoned' }],
  },
  // Storms (STORM_WINDOW): another resolved incident of the service joins the group's run (one run, one
  // message, at most one session per group). Taken by Lifecycle.openOrJoin, in the transaction that
  // decides the incident's run.
  /**
   * Joined while the group waits for a decision, was skipped, or its session could not be created: its
   * message shows one more incident (and Approve, Start anyway or Retry tells the session about all).
   */
  join: { from: ['awaiting_approval', 'skipped', 'start_failed'], to: 'same', jobs: ['sync_message'] },
  /** Joined while the session starts or runs: the incident is sent to it as a follow-up message. */
  join_live: { from: LIVE, to: 'same', jobs: ['sync_message', 'append_incidents'] },
  /** An incident with an auto-start priority joined a group waiting for approval: policy starts it. */
  join_and_start: {
    from: ['awaiting_approval'],
    to: 'starting',
    jobs: ['sync_message', 'start_session'],
  },
} as const satisfies Record<string, Transition>;

export type RunEvent = keyof typeof TRANSITIONS;

/** States whose Devin session the bot follows. */
export const FOLLOWED_STATES: readonly RunState[] = FOLLOWED;
/** States in which a person may press Stop (those `stop` leaves from). */
export const STOPPABLE_STATES: readonly RunState[] = TRANSITIONS.stop.from;
/** States a run never leaves. */
export const TERMINAL_STATES: readonly RunState[] = RUN_STATES.filter(
  (s) => !Object.values(TRANSITIONS).some((t: Transition) => t.from.includes(s) && t.to !== 'same'),
);

/** Whether `event` may fire in `state`. */
export function allows(event: RunEvent, state: RunState): boolean {
  return (TRANSITIONS[event].from as readonly RunState[]).includes(state);
}

const JOB_MAKERS: Record<Exclude<JobSpec, object>, (runId: string) => NewJob> = {
  start_session: startSessionJob,
  sync_message: syncMessageJob,
  terminate_session: terminateSessionJob,
  finalize_session: finalizeSessionJob,
  pagerduty_note: pagerDutyNoteJob,
  append_incidents: appendIncidentsJob,
};

function jobsFor(runId: string, specs: readonly JobSpec[]): NewJob[] {
  return specs.map((spec) =>
    typeof spec === 'object' ? threadReplyJob(runId, spec.reply) : JOB_MAKERS[spec](runId),
  );
}

export interface FireOptions {
  patch?: RunPatch;
  /**
   * The state the caller saw: the step applies only if the run is still in it (it must be one the
   * event is declared for). Without it, any declared `from` state will do.
   */
  expect?: RunState;
  /** Fields that must still be unset for the step to apply (a reminder not yet sent). */
  onlyIfUnset?: readonly (keyof RunPatch)[];
}

/** The one way a run is opened or changes state. */
export class Lifecycle {
  constructor(private readonly store: Store) {}

  /** Opens a run in the state its trigger is born in, unless the incident already has that attempt. */
  open(run: Omit<NewRun, 'state'>): Promise<PostmortemRun | undefined> {
    const birth = BIRTHS[run.trigger];
    return this.store.openRun({ ...run, state: birth.state }, jobsFor(run.id, birth.jobs));
  }

  /**
   * Fires `event` on the run: one conditional write. Returns the updated run, or undefined when the run
   * was not (or no longer) in a state the step applies to.
   */
  async fire(runId: string, event: RunEvent, options: FireOptions = {}): Promise<PostmortemRun | undefined> {
    const t: Transition = TRANSITIONS[event];
    if (options.expect !== undefined && !t.from.includes(options.expect)) {
      throw new LifecycleBug(`${event} is not declared from ${options.expect}`);
    }
    const from = options.expect !== undefined ? [options.expect] : t.from;
    if (t.to === 'same') {
      // A step that keeps the state is taken from exactly one state, so "to" is that state.
      const states = options.expect !== undefined ? from : await this.currentState(runId, t.from);
      const state = states[0];
      if (state === undefined) return undefined;
      return this.store.transitionRun(
        runId,
        [state],
        state,
        options.patch ?? {},
        jobsFor(runId, t.jobs),
        options.onlyIfUnset,
      );
    }
    return this.store.transitionRun(
      runId,
      from,
      t.to,
      options.patch ?? {},
      jobsFor(runId, t.jobs),
      options.onlyIfUnset,
    );
  }

  /**
   * Storms: opens the run as `open` does, as a new group of one, or the incident joins the group of its
   * service within the window instead, by the join steps above, all in one store transaction. An
   * incident that would auto-start (`autoStart`) starts a group still waiting for approval; any other
   * joins it as it is. Undefined when the incident already has a run or a group.
   */
  openOrJoin(
    run: Omit<NewRun, 'state'>,
    storm: { serviceId: string; resolvedAt: number; windowMs: number; autoStart: boolean; now: number },
  ): Promise<StormOutcome | undefined> {
    const birth = BIRTHS[run.trigger];
    const events: RunEvent[] = storm.autoStart
      ? ['join_and_start', 'join_live', 'join']
      : ['join_live', 'join'];
    const steps: StormJoin['steps'] = {};
    for (const event of events) {
      const t: Transition = TRANSITIONS[event];
      for (const from of t.from) {
        steps[from] ??= {
          to: t.to === 'same' ? from : t.to,
          // A group started by policy: decided now, by nobody.
          patch: t.to === 'same' ? {} : { decidedAt: storm.now, decidedBy: null },
          jobs: (groupRunId) => jobsFor(groupRunId, t.jobs),
        };
      }
    }
    return this.store.openOrJoinStorm({ ...run, state: birth.state }, jobsFor(run.id, birth.jobs), {
      serviceId: storm.serviceId,
      resolvedAt: storm.resolvedAt,
      windowMs: storm.windowMs,
      steps,
    });
  }

  private async currentState(runId: string, from: readonly RunState[]): Promise<RunState[]> {
    const run = await this.store.getRun(runId);
    return run && from.includes(run.state) ? [run.state] : [];
  }
}

/**
 * The table as a Mermaid state diagram: the README's diagram is this text (a test keeps them equal).
 * Births come from [*]; self-steps (reminders, the finish message) are left out.
 */
export function lifecycleDiagram(): string {
  const lines = ['stateDiagram-v2'];
  const births = new Map<RunState, RunTrigger[]>();
  for (const [trigger, birth] of Object.entries(BIRTHS) as [RunTrigger, Birth][]) {
    births.set(birth.state, [...(births.get(birth.state) ?? []), trigger]);
  }
  for (const [state, triggers] of births) lines.push(`    [*] --> ${state}: ${triggers.join(', ')}`);
  for (const [event, t] of Object.entries(TRANSITIONS) as [RunEvent, Transition][]) {
    if (t.to === 'same') continue;
    for (const from of t.from) lines.push(`    ${from} --> ${t.to}: ${event}`);
  }
  for (const state of TERMINAL_STATES) lines.push(`    ${state} --> [*]`);
  return lines.join('\n');
}
