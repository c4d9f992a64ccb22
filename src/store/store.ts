import type { BudgetHold, Incident, PostmortemRun, RunState, StormMember } from '../postmortems/model.js';

/**
 * Everything durable: received webhook events, incidents, postmortem runs and queued jobs.
 * Async so that a networked store (Postgres, for several replicas) fits the same shape; each method that
 * changes more than one thing does it in one transaction.
 */
export interface Store {
  /** Cheap check that the store can take writes (used by /readyz). Throws when it cannot. */
  ping(): Promise<void>;

  /**
   * Records a webhook event and queues `jobs` in the same transaction, unless an event with that ID was
   * recorded before (then nothing is written). Resolves only once the event is durable.
   */
  recordEvent(event: ReceivedEvent, jobs: readonly NewJob[]): Promise<'recorded' | 'duplicate'>;
  getEvent(id: string): Promise<ReceivedEvent | undefined>;
  /** How many webhook events are kept. */
  countEvents(): Promise<number>;

  getIncident(id: string): Promise<Incident | undefined>;
  saveIncident(incident: Incident): Promise<void>;

  /**
   * Opens a run and queues its jobs, atomically, unless the incident already has a run with that attempt
   * number. Returns undefined when it already had one.
   */
  openRun(run: NewRun, jobs: NewJob[]): Promise<PostmortemRun | undefined>;
  getRun(id: string): Promise<PostmortemRun | undefined>;
  /** An incident's runs, oldest attempt first. */
  runsForIncident(incidentId: string): Promise<PostmortemRun[]>;
  runsForIncidentNumber(incidentNumber: number): Promise<PostmortemRun[]>;
  /** The newest runs first; only those reported in `channel` when it is given. */
  recentRuns(limit: number, filter?: { channel?: string }): Promise<PostmortemRun[]>;
  /** Runs in any of these states, oldest first. */
  runsInStates(states: readonly RunState[], limit: number): Promise<PostmortemRun[]>;
  /**
   * The one way a run changes state: only if it is currently in one of `from`. Queues `jobs` in the same
   * transaction. Returns the updated run, or undefined if the run was not in `from` (someone else won).
   * `onlyIfUnset` adds conditions that those fields are still null (e.g. a reminder not yet sent).
   */
  transitionRun(
    id: string,
    from: readonly RunState[],
    to: RunState,
    patch: RunPatch,
    jobs: NewJob[],
    onlyIfUnset?: readonly (keyof RunPatch)[],
  ): Promise<PostmortemRun | undefined>;
  /**
   * Opens a run whose birth starts a session, through the session gate (see SessionGate): the day's use
   * and the live sessions are counted and the run written in one transaction, under one lock shared by
   * every replica, so no two starts both take the last slot. `run.state` is unused: the step taken is
   * `steps.admitted`, `steps.full` or `steps.overBudget` (no run at all when that is undefined). Returns
   * the run as written, or undefined when the incident already had that attempt (or nothing was written).
   */
  openGatedRun(run: NewRun, gate: SessionGate, steps: GatedSteps): Promise<PostmortemRun | undefined>;
  /**
   * transitionRun through the session gate: the step is one of `steps`, as the gate decides, atomically
   * with the counts (one lock across replicas). Undefined when the run was not in `from`.
   */
  transitionGatedRun(
    id: string,
    from: readonly RunState[],
    gate: SessionGate,
    steps: GatedSteps,
    patch: RunPatch,
  ): Promise<PostmortemRun | undefined>;
  /**
   * Lets waiting runs start, oldest first: as many runs in `from` (by queued_at) as the cap leaves room
   * for (all of them without a cap) move to `to` with `jobs(runId)`, under the gate's lock. Returns them.
   */
  admitQueued(
    from: RunState,
    to: RunState,
    gate: SessionGate,
    jobs: (runId: string) => NewJob[],
  ): Promise<PostmortemRun[]>;
  /** The day's use of the session budget and the live and waiting runs now (budget.ts). */
  sessionUse(day: number, liveStates: readonly RunState[], queuedState: RunState): Promise<SessionUse>;
  /** Bookkeeping that is not a state change (Slack message ts, create intent). */
  updateRun(id: string, patch: RunPatch): Promise<void>;

  /**
   * Storm grouping, in one transaction: unless the incident already has a run or is in a group (then
   * undefined, nothing written), the incident joins the newest group of its service whose run is in one
   * of `join.steps`' states and whose resolutions it is within `join.windowMs` of (the group's state then
   * moves as that step says, queueing its jobs); else `run` opens with `jobs` as a new group of one. Two
   * joins of one service never both open a group, on one replica or several.
   */
  openOrJoinStorm(run: NewRun, jobs: NewJob[], join: StormJoin): Promise<StormOutcome | undefined>;
  /** A group's incidents, first resolved first; empty for a run that is no group. */
  stormMembers(runId: string): Promise<StormMember[]>;
  /** These incidents of the group reached its Devin session at `at` (those not marked before). */
  markStormDelivered(runId: string, incidentIds: readonly string[], at: number): Promise<void>;
  /**
   * The incidents of the group packed into its session's prompt, written with the create intent (before
   * the create call): `incidentIds` get `at`, every other member of the group none. `at` null clears all.
   */
  markStormInPrompt(runId: string, incidentIds: readonly string[], at: number | null): Promise<void>;
  /** The group's postmortem was noted on this incident in PagerDuty at `at` (unless it was before). */
  markStormNoted(runId: string, incidentId: string, at: number): Promise<void>;
  /**
   * Storms, in one transaction: `run` opens with `jobs` as a new group of its own, and the incidents of
   * `move.fromRunId`'s group named in `move.incidentIds` move into it (with `undeliveredOnly`, only those
   * that never reached its session), delivered, in-prompt and noted reset; `move.fromJobs` are queued for
   * the group left behind. Undefined, nothing written, when none of them is still there to move or `run`'s
   * incident already has that attempt: a repeated call changes nothing.
   */
  moveStormMembers(run: NewRun, jobs: NewJob[], move: StormMove): Promise<PostmortemRun | undefined>;

  enqueueJob(job: NewJob): Promise<void>;
  /** Takes the next due job whose lane has no earlier unfinished job, and leases it until `leaseUntil`. */
  claimJob(now: number, leaseUntil: number): Promise<Job | undefined>;
  /**
   * The claimed job (its id and attempt number: the lease) is done, to be retried, or given up for good (it
   * stays for inspection and no longer blocks its lane). If the lease ran out and the job was handed to
   * another worker meanwhile, these change nothing.
   */
  completeJob(job: JobLease): Promise<void>;
  /** `failed`: this try failed (it counts toward the backoff); otherwise it is a planned return. */
  retryJob(job: JobLease, runAt: number, error: string, options: { failed: boolean }): Promise<void>;
  buryJob(job: JobLease, error: string): Promise<void>;
  /** When the next queued job scheduled after `now` is due, if any. */
  nextRunAt(now: number): Promise<number | undefined>;
  /** Returns jobs whose lease ran out (their worker died) to the queue. */
  releaseExpiredLeases(now: number): Promise<number>;
  /**
   * Extends the leases of jobs this worker is still running (its heartbeat) to `until`. Returns those it
   * still held; a lease that ran out and went to another worker meanwhile is not renewed.
   */
  renewJobLeases(jobs: readonly JobLease[], until: number): Promise<JobLease[]>;
  countJobs(): Promise<{ queued: number; running: number; dead: number }>;
  /** What /metrics reports about the shared state (see StoreStats). */
  stats(): Promise<StoreStats>;
  /**
   * Jobs as the queue holds them, oldest first (at most `limit`, default 100), optionally only those in one
   * state: for looking at the queue (dead jobs and why they died), not for running it.
   */
  listJobs(filter?: { state?: JobState; limit?: number }): Promise<JobRecord[]>;
  getJob(id: number): Promise<JobRecord | undefined>;
  /**
   * Dead jobs back to the queue, due at once, their failures forgotten (the backoff starts again), their
   * last error kept until they run: the given IDs, or every dead job. Returns the IDs revived; a job that
   * is not dead (or not there) is left alone.
   */
  reviveDeadJobs(which: readonly number[] | 'all'): Promise<number[]>;
  /** Deletes a dead job for good. False when there is no dead job with that ID. */
  discardDeadJob(id: number): Promise<boolean>;
  /**
   * Retention: deletes webhook events received before `cutoff`, dead jobs created before it, incidents
   * no run refers to that were last updated before it, and the evidence kept on runs opened before it.
   * Runs themselves (the postmortem history) stay. Reclaims the space where the engine needs telling.
   */
  purgeBefore(cutoff: number): Promise<{ events: number; jobs: number; incidents: number; evidence: number }>;
  /**
   * Paces calls into `channel` to one per `intervalMs` across every process sharing this store
   * (pacing.ts). Reserves a slot for `callKey` if it must wait, and returns when it may go: `now` means
   * now (the call counts as made), later means come back then with the same key.
   */
  takeChannelSlot(channel: string, callKey: string, now: number, intervalMs: number): Promise<number>;
  /** Nothing goes to `channel` before `until` (Slack answered 429 with Retry-After), reserved or not. */
  blockChannel(channel: string, until: number): Promise<void>;
  /**
   * Takes or renews the named lease for `owner` until `until`, unless another owner holds it past `now`.
   * Returns whether `owner` holds it: how one replica of several runs a shared schedule's tick.
   */
  tryLease(name: string, owner: string, now: number, until: number): Promise<boolean>;
  /** Gives the lease up, if `owner` holds it (shutting down: another replica takes the next tick). */
  releaseLease(name: string, owner: string): Promise<void>;
  /**
   * Approval digests (postmortems/digest.ts). Decides once, atomically, where run `runId`'s approval
   * request is shown: in `channel`'s digest when at least `after` other requests of that channel, opened
   * before it, are still waiting; else in a message of its own. A request that goes to the digest marks
   * the digest changed and queues `redraw` in the same transaction. The decision stands: asking again
   * returns it unchanged. Undefined when there is no such run.
   */
  placeApprovalRequest(
    runId: string,
    bound: PlacementBound,
    redraw: NewJob,
  ): Promise<ApprovalPlacement | undefined>;
  /**
   * Decides once, atomically, where the message of run `runId`, started by policy (auto-start, storm
   * group), is shown: in the channel's digest thread when the requests waiting in its channel and the
   * runs started by policy whose own message was placed there since `bound.since` are `bound.after` or
   * more; else in a message of its own. One that goes to the digest gets the channel's digest as its
   * thread at once when that digest is live (open, or holding runs placed since `since` in its thread);
   * else its thread stays null until the next redraw posts a digest (digestDrawn adopts it). Either way the
   * digest is marked changed and `redraw` queued in the same transaction. Asking again returns the
   * decision and the thread as they stand. Undefined when there is no such run.
   */
  placeStartedRun(
    runId: string,
    bound: PlacementBound,
    redraw: NewJob,
  ): Promise<StartedPlacement | undefined>;
  /**
   * The runs started by policy whose messages are in `channel`'s digest thread `threadTs` (or wait for a
   * digest: thread null and no message posted yet), newest first: `limit` of them, how many in all, how many of those in `threadTs`
   * were placed since `since`, and how many wait for a digest to be posted.
   */
  startedInDigest(
    channel: string,
    options: { threadTs: string | null; since: number; limit: number },
  ): Promise<StartedInDigest>;
  /** Where the run's approval request was shown, if it was placed, and the digest thread it reports in. */
  approvalPlacement(
    runId: string,
  ): Promise<{ shownIn: ApprovalPlacement; threadTs: string | null; kind: PlacementKind } | undefined>;
  /** The digest thread a request approved there reports in (its message and replies); set once. */
  setApprovalThread(runId: string, threadTs: string): Promise<void>;
  /**
   * Something the channel's digest shows changed (a request decided or expired): if the channel has an
   * open digest (or one still to be drawn), it is marked changed and `redraw` queued. False when it has none.
   */
  touchDigest(channel: string, redraw: NewJob): Promise<boolean>;
  getDigest(channel: string): Promise<DigestRecord | undefined>;
  /**
   * Records a redraw of the digest: its message, whether it is still open (once closed, the next fold
   * posts a new one at the bottom of the channel), the change version it shows and when. With `adopt`
   * (the message at `ts` was just drawn live), runs started by policy that wait for a digest thread get
   * `ts` as theirs, in the same statement; not one whose message was posted meanwhile (in the channel,
   * having waited too long for a digest): its replies stay under its own message.
   */
  digestDrawn(
    channel: string,
    drawn: { ts: string | null; open: boolean; version: number; at: number; adopt?: boolean },
  ): Promise<void>;
  /**
   * The approval requests waiting in `channel` (state awaiting_approval), newest first: `limit` of them
   * from `offset`, how many wait in all, how many of those are in the digest, and when the newest was
   * opened. With `openedUpTo`, only those opened at or before then.
   */
  waitingApprovals(
    channel: string,
    options: { openedUpTo?: number; limit: number; offset?: number },
  ): Promise<WaitingApprovals>;

  /** Called whenever jobs may have become runnable, so workers in this process can wake at once. */
  onJobsQueued(listener: () => void): void;

  close(): Promise<void>;
}

/**
 * What a session-starting step checks, atomically with its write (budget.ts decides the figures):
 * - over budget: `budget` is given (a policy start) and the runs holding a slot of `day` (any state but
 *   start_failed) reach `budget.sessions`, or their ACUs (as last polled) reach `budget.acus`;
 * - full: runs in `liveStates` reach `maxLive`, or runs already wait (they go first);
 * - admitted otherwise.
 * Admitted and full runs take a slot of `day` (slot_day); a full one is stamped queued_at; one over budget
 * is stamped budget_hold with the limit that was reached (the sessions one when both are).
 */
export interface SessionGate {
  day: number;
  liveStates: readonly RunState[];
  /** The state runs wait in (for "runs already wait"). */
  queuedState: RunState;
  maxLive?: number | undefined;
  budget?: { sessions?: number | undefined; acus?: number | undefined } | undefined;
}

export interface GatedStep {
  state: RunState;
  jobs: NewJob[];
}

/** What a gated step does in each case; without `overBudget`, a run over budget is not written. */
export interface GatedSteps {
  admitted: GatedStep;
  full: GatedStep;
  overBudget?: GatedStep | undefined;
}

export type { BudgetHold };

/** A day's use of the session budget, and the slots in use now. */
export interface SessionUse {
  /** Runs holding a slot of the day (started, starting or waiting; not those that failed to start). */
  sessions: number;
  /** ACUs their sessions consumed, as last polled. */
  acus: number;
  /** Runs in a live state now (all days). */
  live: number;
  /** Runs waiting for a slot now. */
  queued: number;
}
/** How an incident joins a storm group (Store.openOrJoinStorm); built by the lifecycle. */
export interface StormJoin {
  serviceId: string;
  /** When the incident resolved, unix ms. */
  resolvedAt: number;
  windowMs: number;
  /**
   * The states a group's run may be joined in, each with the state it moves to (the same for bookkeeping)
   * and the jobs the join queues for that run.
   */
  steps: Partial<Record<RunState, StormStep>>;
  /**
   * The session gate (budget.ts) for the starts this may make, decided under the gate's lock in the same
   * transaction: a new group's birth (`open`, in place of `run.state` and the jobs given), and the steps
   * that start a group's session (`starts`, by the state they are taken from: where each goes instead
   * when the cap is reached or the day's budget is).
   */
  gate?: {
    gate: SessionGate;
    open?: GatedSteps | undefined;
    starts?: Partial<Record<RunState, { full: StormStep; overBudget: StormStep }>>;
  };
}

export interface StormStep {
  to: RunState;
  patch: RunPatch;
  jobs: (runId: string) => NewJob[];
}

/** Which incidents Store.moveStormMembers takes out of a group; built by the lifecycle. */
export interface StormMove {
  fromRunId: string;
  incidentIds: readonly string[];
  undeliveredOnly: boolean;
  fromJobs: NewJob[];
  /**
   * The session gate for the new run's birth when it starts a session (as StormJoin's `open`): in place
   * of `run.state` and the jobs given; a birth the gate does not write (over budget, no step) moves nothing.
   */
  gate?: { gate: SessionGate; open: GatedSteps } | undefined;
}

export type StormOutcome =
  | { outcome: 'opened'; run: PostmortemRun }
  /** `run` as after the join; `from` the state it was joined in. */
  | { outcome: 'joined'; run: PostmortemRun; from: RunState; members: number };

/** The shared state in figures, for metrics: the same on every replica. */
export interface StoreStats {
  jobs: { queued: number; running: number; dead: number };
  /** When the oldest job still waiting (queued, due or not) was queued; null when none waits. */
  oldestQueuedJobAt: number | null;
  /** Runs by state; states with no run are left out. */
  runs: Partial<Record<RunState, number>>;
  /** ACUs the sessions of all runs consumed, as last polled. */
  acusConsumed: number;
}

/** Where an approval request is shown: its own message, or its channel's digest. */
export type ApprovalPlacement = 'card' | 'digest';

/**
 * The per-channel bound on top-level messages in a storm (digest.ts): `after` is SLACK_DIGEST_AFTER, and
 * runs started by policy count as open while their own message was placed at or after `since`.
 */
export interface PlacementBound {
  after: number;
  since: number;
}

/** What was placed: an approval request, or the message of a run started by policy. */
export type PlacementKind = 'request' | 'run';

/** Where a run started by policy shows its message, and the digest thread it is in (null: not yet). */
export interface StartedPlacement {
  shownIn: ApprovalPlacement;
  threadTs: string | null;
}

export interface StartedInDigest {
  total: number;
  /** Of those in the given thread, the ones placed since `since` (they keep a closed digest live). */
  recentInThread: number;
  /** Placed in the digest, waiting for one to be posted. */
  pending: number;
  runs: PostmortemRun[];
}

export interface DigestRecord {
  channel: string;
  /** The latest digest message; null before the first post. */
  ts: string | null;
  /** Whether it still shows waiting requests (false once everything in it was decided). */
  open: boolean;
  /** Changes asked for so far, and the last one drawn: a redraw is due while they differ. */
  version: number;
  drawnVersion: number;
  /** When it was last drawn (0: never). */
  drawnAt: number;
}

export interface WaitingApprovals {
  total: number;
  /** The incidents those requests are for: a storm group's request counts each of its incidents. */
  incidents: number;
  /** Of those, the requests shown in the digest (not in a message of their own). */
  inDigest: number;
  /**
   * Of those, the runs policy would have started that the day's budget holds for approval: approving one
   * overrides DEVIN_DAILY_SESSION_LIMIT / DEVIN_DAILY_ACU_LIMIT.
   */
  held: number;
  /** created_at of the newest waiting request, null when none waits. */
  newestOpenedAt: number | null;
  runs: PostmortemRun[];
}

export interface ReceivedEvent {
  id: string;
  type: string;
  incidentId: string | null;
  occurredAt: string;
  receivedAt: number;
  /** The webhook body exactly as received (the v3 envelope), as JSON text. */
  payload: string;
}

export type NewRun = Pick<
  PostmortemRun,
  | 'id'
  | 'incidentId'
  | 'attempt'
  | 'state'
  | 'trigger'
  | 'channel'
  | 'decidedBy'
  | 'decidedAt'
  | 'devinTag'
  | 'promptSecret'
  | 'incident'
>;

export type RunPatch = Partial<
  Pick<
    PostmortemRun,
    | 'channel'
    | 'slackTs'
    | 'decidedBy'
    | 'decidedAt'
    | 'devinSessionId'
    | 'devinUrl'
    | 'createAttemptedAt'
    | 'error'
    | 'devinStatus'
    | 'devinStatusDetail'
    | 'acusConsumed'
    | 'sessionStartedAt'
    | 'pullRequests'
    | 'result'
    | 'finalizeRequestedAt'
    | 'finalizeSentAt'
    | 'remindedAt'
    | 'stoppedBy'
    | 'evidence'
    | 'incident'
    | 'promptSecret'
    | 'budgetOverrideBy'
  >
>;

export type JobKind =
  | 'process_event'
  | 'start_session'
  | 'sync_message'
  | 'thread_reply'
  | 'finalize_session'
  | 'terminate_session'
  | 'pagerduty_note'
  | 'append_incidents'
  | 'purge_expired_data'
  | 'sync_digest'
  | 'admit_queued';

export interface NewJob {
  kind: JobKind;
  /** Jobs in one lane run one at a time, in order (e.g. all events of one incident). */
  lane: string;
  payload: Record<string, unknown>;
  runAt?: number;
  /** When set, no second job with this key is queued while one is still waiting. */
  dedupeKey?: string;
}

export type JobLease = Pick<Job, 'id' | 'attempts'>;

/** queued: waiting to run (maybe not yet due); running: leased to a worker; dead: given up, kept to look at. */
export type JobState = 'queued' | 'running' | 'dead';

export interface Job {
  id: number;
  kind: JobKind;
  lane: string;
  payload: Record<string, unknown>;
  /** Tries so far, counting this one (with the id: the lease). */
  attempts: number;
  /** Tries that failed (not planned returns such as a paced Slack call): the backoff's exponent. */
  failures: number;
  createdAt: number;
}

export interface JobRecord extends Job {
  state: JobState;
  /** When it is due: its next attempt, for a job being retried. */
  runAt: number;
  /** Why its last failed or rescheduled attempt returned, if one did. */
  lastError: string | null;
}
