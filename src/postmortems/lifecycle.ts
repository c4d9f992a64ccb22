import type {
  GatedSteps,
  NewJob,
  NewRun,
  RunPatch,
  Store,
  StormJoin,
  StormMove,
  StormOutcome,
} from '../store/store.js';
import { SessionBudget, type SlotStates } from './budget.js';
import { LifecycleBug } from './errors.js';
import {
  admitQueuedJob,
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
  queued: 'waiting for a free session slot (DEVIN_MAX_CONCURRENT_SESSIONS)',
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
  | 'admit_queued'
  | 'append_incidents'
  | { reply: ThreadReplyKind };

interface Step {
  state: RunState;
  jobs: readonly JobSpec[];
}

/**
 * A step that starts a session passes the session gate (budget.ts): atomically with its write, the store
 * decides whether it starts now, waits for a slot (`full`: the concurrency cap is reached) or, for a
 * policy start, asks first (`overBudget`: the day's budget is reached; null: nothing is opened).
 */
interface Gate {
  full: Step;
  overBudget?: Step | null;
}

interface Birth extends Step {
  gate?: Gate;
}

/** Waiting for a free session slot: the message says so; the queue is looked at (someone may have left). */
const WAIT: Step = { state: 'queued', jobs: ['sync_message', 'admit_queued'] };
/** Over the day's budget: the channel is asked, and approving is the override. */
const ASK: Step = { state: 'awaiting_approval', jobs: ['sync_message'] };

/** How a run is born, by what triggered it. */
export const BIRTHS: Record<RunTrigger, Birth> = {
  /** Resolved, priority not in the auto-start set: the channel is asked first. */
  approval: { state: 'awaiting_approval', jobs: ['sync_message'] },
  /** Resolved with an auto-start priority: the session starts at once; its message follows it. */
  auto: { state: 'starting', jobs: ['start_session'], gate: { full: WAIT, overBudget: ASK } },
  /** Acknowledged with an early-start priority: gather evidence while the incident is open (not over budget). */
  early: { state: 'starting', jobs: ['start_session'], gate: { full: WAIT, overBudget: null } },
  /** A person asked (`/postmortem`, Run again, Retry of a failed session): the asking is the approval. */
  manual: { state: 'starting', jobs: ['sync_message', 'start_session'], gate: { full: WAIT } },
};

interface Transition {
  from: readonly RunState[];
  /** The state after the step; 'same' keeps the run where it is (bookkeeping that must happen once). */
  to: RunState | 'same';
  jobs: readonly JobSpec[];
  /** A step that starts a session: where it goes when the cap is reached instead (people's starts). */
  gate?: Gate;
}

const FOLLOWED = ['started', 'needs_input'] as const satisfies readonly RunState[];
/** States whose run holds a session slot (DEVIN_MAX_CONCURRENT_SESSIONS counts them). */
const LIVE = ['starting', ...FOLLOWED] as const satisfies readonly RunState[];
/** Live or waiting for a slot: what Stop and the finish message apply to. */
const UNDER_WAY = ['queued', ...LIVE] as const satisfies readonly RunState[];
const PEOPLE_START = { full: WAIT } as const satisfies Gate;

export const TRANSITIONS = {
  // People, in Slack. Their starts wait for a slot when the concurrency cap is reached.
  approve: {
    from: ['awaiting_approval'],
    to: 'starting',
    jobs: ['sync_message', 'start_session'],
    gate: PEOPLE_START,
  },
  skip: { from: ['awaiting_approval'], to: 'skipped', jobs: ['sync_message'] },
  start_anyway: {
    from: ['skipped'],
    to: 'starting',
    jobs: ['sync_message', 'start_session'],
    gate: PEOPLE_START,
  },
  retry_start: {
    from: ['start_failed'],
    to: 'starting',
    jobs: ['sync_message', 'start_session'],
    gate: PEOPLE_START,
  },
  stop: { from: UNDER_WAY, to: 'stopped', jobs: ['terminate_session', 'sync_message', 'admit_queued'] },
  // Time, while an approval waits.
  remind: { from: ['awaiting_approval'], to: 'same', jobs: [{ reply: 'reminder' }] },
  expire: { from: ['awaiting_approval'], to: 'expired', jobs: ['sync_message'] },
  // A session slot came free (a live run ended): the oldest waiting run starts (Lifecycle.admitQueued).
  dequeue: { from: ['queued'], to: 'starting', jobs: ['sync_message', 'start_session'] },
  // Creating the session.
  session_created: { from: ['starting'], to: 'started', jobs: ['sync_message'] },
  start_refused: { from: ['starting'], to: 'start_failed', jobs: ['sync_message', 'admit_queued'] },
  /** An early start's incident resolved: tell the session to write the postmortem now. */
  finalize: { from: UNDER_WAY, to: 'same', jobs: ['finalize_session', 'sync_message'] },
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
    jobs: ['sync_message', { reply: 'finished' }, 'pagerduty_note', 'admit_queued'],
  },
  session_failed: {
    from: FOLLOWED,
    to: 'session_failed',
    jobs: ['sync_message', { reply: 'session_failed' }, 'admit_queued'],
  },
  /** Followed too long: the session is terminated too, or it would go on consuming ACUs unwatched. */
  give_up: {
    from: FOLLOWED,
    to: 'abandoned',
    jobs: ['terminate_session', 'sync_message', { reply: 'abandoned' }, 'admit_queued'],
  },
  // Storms (STORM_WINDOW): another resolved incident of the service joins the group's run (one run, one
  // message, at most one session per group). Taken by Lifecycle.openOrJoin, in the transaction that
  // decides the incident's run.
  /**
   * Joined while the group waits for a decision, was skipped, or its session could not be created: its
   * message shows one more incident (and Approve, Start anyway or Retry tells the session about all).
   * An incident with an auto-start priority joins only a group waiting for approval (join_and_start);
   * a skipped or start_failed group leaves it to open a group of its own, which policy starts.
   */
  join: {
    from: ['awaiting_approval', 'skipped', 'start_failed', 'queued'],
    to: 'same',
    jobs: ['sync_message'],
  },
  /** Joined while the session starts or runs: the incident is sent to it as a follow-up message. */
  join_live: { from: LIVE, to: 'same', jobs: ['sync_message', 'append_incidents'] },
  /**
   * An incident with an auto-start priority joined a group waiting for approval: policy starts it, through
   * the session gate (under the cap it waits; over the day's budget the group keeps asking, saying why).
   */
  join_and_start: {
    from: ['awaiting_approval'],
    to: 'starting',
    jobs: ['sync_message', 'start_session'],
    gate: { full: WAIT, overBudget: ASK },
  },
} as const satisfies Record<string, Transition>;

export type RunEvent = keyof typeof TRANSITIONS;

/**
 * Storms: the states in which a group's incidents that have not reached a session still will, in the
 * prompt of the session its decision (Approve, Start anyway, Retry) or the create under way makes. A
 * group whose run is in any other state with such incidents (its session ended, or refused the message
 * about them) hands them to a new group of their own (Lifecycle.regroup).
 */
export const GROUP_PENDING_STATES: readonly RunState[] = [
  'awaiting_approval',
  'skipped',
  'start_failed',
  'queued',
  'starting',
];

/** States whose Devin session the bot follows. */
export const FOLLOWED_STATES: readonly RunState[] = FOLLOWED;
/** States in which a person may press Stop (those `stop` leaves from). */
export const STOPPABLE_STATES: readonly RunState[] = TRANSITIONS.stop.from;
/** The states whose runs hold a session slot, and the one runs wait for a slot in (budget.ts). */
export const SLOT_STATES: SlotStates = { live: LIVE, queued: 'queued' };
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
  admit_queued: () => admitQueuedJob(),
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
  private readonly budget: SessionBudget;

  /** Without a budget: no limits (every start is let through the gate at once, and counted). */
  constructor(
    private readonly store: Store,
    budget?: SessionBudget,
  ) {
    this.budget = budget ?? new SessionBudget(store, {}, SLOT_STATES, Date.now);
  }

  /**
   * Opens a run in the state its trigger is born in, unless the incident already has that attempt. A
   * birth that starts a session passes the session gate: it may be born waiting, or asking (over budget).
   */
  open(run: Omit<NewRun, 'state'>): Promise<PostmortemRun | undefined> {
    const birth = BIRTHS[run.trigger];
    if (!birth.gate)
      return this.store.openRun({ ...run, state: birth.state }, this.jobsFor(run.id, birth.jobs));
    const policy = run.trigger === 'auto' || run.trigger === 'early';
    return this.store.openGatedRun(
      { ...run, state: birth.state },
      this.budget.gate(policy),
      this.gatedSteps(run.id, birth, birth.gate),
    );
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
    if (t.gate && t.to !== 'same') {
      if (options.onlyIfUnset?.length)
        throw new LifecycleBug(`${event} passes the session gate: no onlyIfUnset`);
      return this.store.transitionGatedRun(
        runId,
        from,
        this.budget.gate(false),
        this.gatedSteps(runId, { state: t.to, jobs: t.jobs }, t.gate),
        options.patch ?? {},
      );
    }
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
        this.jobsFor(runId, t.jobs),
        options.onlyIfUnset,
      );
    }
    return this.store.transitionRun(
      runId,
      from,
      t.to,
      options.patch ?? {},
      this.jobsFor(runId, t.jobs),
      options.onlyIfUnset,
    );
  }

  /**
   * `dequeue`, as the store's gate allows: the oldest waiting runs start while the cap leaves room. Queued
   * by every step that frees a slot (admit_queued), and tried on every follower tick as a fallback.
   */
  admitQueued(): Promise<PostmortemRun[]> {
    const t = TRANSITIONS.dequeue;
    return this.store.admitQueued(t.from[0], t.to, this.budget.gate(false), (runId) =>
      this.jobsFor(runId, t.jobs),
    );
  }

  /** A step's jobs; the queue is looked at only under a cap (without one, nothing waits for a slot). */
  private jobsFor(runId: string, specs: readonly JobSpec[]): NewJob[] {
    const capped = this.budget.limits.maxConcurrent !== undefined;
    return jobsFor(
      runId,
      specs.filter((spec) => capped || spec !== 'admit_queued'),
    );
  }

  private gatedSteps(runId: string, admitted: Step, gate: Gate): GatedSteps {
    const step = (s: Step) => ({ state: s.state, jobs: this.jobsFor(runId, s.jobs) });
    return {
      admitted: step(admitted),
      full: step(gate.full),
      overBudget: gate.overBudget ? step(gate.overBudget) : undefined,
    };
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
    const starts: NonNullable<StormJoin['gate']>['starts'] = {};
    // A group started by policy: decided now, by nobody.
    const decided = { decidedAt: storm.now, decidedBy: null };
    for (const event of events) {
      const t: Transition = TRANSITIONS[event];
      for (const from of t.from) {
        if (steps[from]) continue;
        // An auto-start incident does not wait on a group people skipped or whose start failed.
        if (storm.autoStart && event === 'join' && (from === 'skipped' || from === 'start_failed')) continue;
        steps[from] = {
          to: t.to === 'same' ? from : t.to,
          patch: t.to === 'same' ? {} : decided,
          jobs: (groupRunId) => this.jobsFor(groupRunId, t.jobs),
        };
        // A policy start of the group passes the session gate: waiting under the cap, or asking still
        // (the message then says the budget is reached).
        const g = t.gate;
        if (g?.overBudget) {
          starts[from] = {
            full: { to: g.full.state, patch: decided, jobs: (id) => this.jobsFor(id, g.full.jobs) },
            overBudget: {
              to: g.overBudget.state,
              patch: {},
              jobs: (id) => this.jobsFor(id, g.overBudget?.jobs ?? []),
            },
          };
        }
      }
    }
    const policy = run.trigger === 'auto' || run.trigger === 'early';
    return this.store.openOrJoinStorm({ ...run, state: birth.state }, this.jobsFor(run.id, birth.jobs), {
      serviceId: storm.serviceId,
      resolvedAt: storm.resolvedAt,
      windowMs: storm.windowMs,
      steps,
      gate: {
        gate: this.budget.gate(policy || storm.autoStart),
        open: birth.gate ? this.gatedSteps(run.id, birth, birth.gate) : undefined,
        starts,
      },
    });
  }

  /**
   * Storms: opens `run` (born as its trigger says) as a new group, taking incidents out of another
   * group's run in the same store transaction: the undelivered incidents of a group whose session can no
   * longer be told them (`undeliveredOnly`, the old group's message redrawn), or a whole group that gets
   * a new attempt (Run again or Retry after its session failed). Undefined when there was nothing left to
   * move (a repeat) or the run's incident already has that attempt.
   */
  regroup(
    run: Omit<NewRun, 'state'>,
    from: { runId: string; incidentIds: readonly string[]; undeliveredOnly: boolean },
  ): Promise<PostmortemRun | undefined> {
    const birth = BIRTHS[run.trigger];
    const policy = run.trigger === 'auto' || run.trigger === 'early';
    const move: StormMove = {
      fromRunId: from.runId,
      incidentIds: from.incidentIds,
      undeliveredOnly: from.undeliveredOnly,
      fromJobs: from.undeliveredOnly ? this.jobsFor(from.runId, ['sync_message']) : [],
      // A birth that starts a session passes the session gate, as `open`'s does.
      gate: birth.gate
        ? { gate: this.budget.gate(policy), open: this.gatedSteps(run.id, birth, birth.gate) }
        : undefined,
    };
    return this.store.moveStormMembers(
      { ...run, state: birth.state },
      this.jobsFor(run.id, birth.jobs),
      move,
    );
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
  const births = new Map<RunState, string[]>();
  const born = (state: RunState, label: string) => births.set(state, [...(births.get(state) ?? []), label]);
  for (const [trigger, birth] of Object.entries(BIRTHS) as [RunTrigger, Birth][]) born(birth.state, trigger);
  for (const [trigger, birth] of Object.entries(BIRTHS) as [RunTrigger, Birth][]) {
    if (birth.gate) born(birth.gate.full.state, `${trigger} (cap reached)`);
    if (birth.gate?.overBudget) born(birth.gate.overBudget.state, `${trigger} (over budget)`);
  }
  for (const [state, triggers] of births) lines.push(`    [*] --> ${state}: ${triggers.join(', ')}`);
  for (const [event, t] of Object.entries(TRANSITIONS) as [RunEvent, Transition][]) {
    if (t.to === 'same') continue;
    for (const from of t.from) lines.push(`    ${from} --> ${t.to}: ${event}`);
    if (t.gate)
      for (const from of t.from) lines.push(`    ${from} --> ${t.gate.full.state}: ${event} (cap reached)`);
  }
  for (const state of TERMINAL_STATES) lines.push(`    ${state} --> [*]`);
  return lines.join('\n');
}
