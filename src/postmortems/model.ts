/** The domain's nouns: an incident as we last saw it, and a postmortem run for it. */

export interface Incident {
  id: string;
  number: number | null;
  title: string;
  status: string;
  serviceId: string;
  serviceName: string;
  /** The account-defined priority label (P1, SEV-1, …), or null when none is set. */
  priority: string | null;
  urgency: string | null;
  htmlUrl: string | null;
  createdAt: string | null;
  resolvedAt: string | null;
  resolvedBy: string | null;
  /** occurred_at of the newest event applied, so an older redelivery cannot roll the state back. */
  lastEventAt: string;
  /** Where the incident is known from: PagerDuty (the default) or a person's report in Slack. */
  source?: 'pagerduty' | 'slack';
  /** What happened, in the words of the person who reported an ad-hoc incident from Slack. */
  summary?: string | null;
}

/**
 * Every state a run can be in. What moves a run between them, and what each step queues, is declared in
 * lifecycle.ts: the only place a state change is written.
 */
export const RUN_STATES = [
  'awaiting_approval',
  'skipped',
  'expired',
  'queued',
  'starting',
  'start_failed',
  'started',
  'needs_input',
  'finished',
  'session_failed',
  'stopped',
  'abandoned',
] as const;

export type RunState = (typeof RUN_STATES)[number];

/** Which of the day's limits held an automatic start for approval. */
export type BudgetHold = 'daily_sessions' | 'daily_acus';

/** Thread replies under a run's message; each is queued once, by the lifecycle step that calls for it. */
export type ThreadReplyKind = 'needs_input' | 'finished' | 'session_failed' | 'abandoned' | 'reminder';

/** Evidence gathered for the prompt: the timeline lines and what could not be gathered or was cut. */
export interface Evidence {
  timeline: string[];
  notes: string[];
}

/**
 * How the run came about: by priority, by someone approving it, by someone asking for it, or early, on
 * acknowledgement, to gather evidence while the incident is still open.
 */
export type RunTrigger = 'auto' | 'approval' | 'manual' | 'early';

/** The structured result Devin is asked for (structured_output_schema), as far as it filled it in. */
export interface PostmortemResult {
  summary?: string;
  root_cause?: string;
  impact?: string;
  action_items?: { title: string; owner?: string }[];
  postmortem_pr_url?: string;
}

export interface PostmortemRun {
  id: string;
  incidentId: string;
  /** 1 for the first run of an incident; a person asking again makes the next one. */
  attempt: number;
  state: RunState;
  trigger: RunTrigger;
  /** Slack channel the run reports in, and its message there once posted. */
  channel: string;
  slackTs: string | null;
  decidedBy: string | null;
  decidedAt: number | null;
  /** Unique tag put on the Devin session so an uncertain create can be looked up instead of repeated. */
  devinTag: string;
  /**
   * Random, per run, and nowhere else (unlike the run ID in button values or the tag on the session): the
   * prompt's data markers are derived from it, so incident text cannot know them. Null for runs opened
   * before it existed; one is made on their first prompt.
   */
  promptSecret: string | null;
  devinSessionId: string | null;
  devinUrl: string | null;
  /** Set before the first create call: after it, a retry must look the tag up first. */
  createAttemptedAt: number | null;
  /** Why the run failed, stopped or was given up, in words fit for Slack (escaped when shown). */
  error: string | null;
  /** Devin's last reported status and status_detail, as polled. */
  devinStatus: string | null;
  devinStatusDetail: string | null;
  /** ACUs the session had consumed when last polled (Devin's acus_consumed). */
  acusConsumed: number | null;
  /**
   * The UTC day (days since the epoch) whose session budget the run's start spent: set when it was let
   * start or queued (budget.ts). Null until then, and for runs started before the budget existed.
   */
  slotDay: number | null;
  /** When the run began waiting for a free session slot (DEVIN_MAX_CONCURRENT_SESSIONS): the queue's order. */
  queuedAt: number | null;
  /** Why a start its priority called for was held for approval instead: the day's budget was reached. */
  budgetHold: BudgetHold | null;
  /** Who approved the run over the day's budget (an explicit override). */
  budgetOverrideBy: string | null;
  /** When the Devin session was created: the clock for giving up on it. */
  sessionStartedAt: number | null;
  pullRequests: string[];
  result: PostmortemResult | null;
  /** Early start: when the incident resolved (the finish message was queued)… */
  finalizeRequestedAt: number | null;
  /** …and when Devin accepted that message. Until then the session is still gathering evidence. */
  finalizeSentAt: number | null;
  remindedAt: number | null;
  stoppedBy: string | null;
  /** The evidence gathered for the prompt (kept so a retried create sends the same prompt). */
  evidence: Evidence | null;
  /** The incident as it was when the run was opened (updated on resolve for early starts). */
  incident: Incident;
  createdAt: number;
  updatedAt: number;
}

/**
 * An incident of a storm group (STORM_WINDOW): resolved incidents of one service whose resolutions fall
 * within the window of each other share one run, the group's. The run's own incident is a member too.
 */
export interface StormMember {
  /** The group's run. */
  runId: string;
  incident: Incident;
  /** When the incident resolved (unix ms): what the window is measured on. */
  resolvedAt: number;
  joinedAt: number;
  /** When the incident reached the group's Devin session (in its prompt or a follow-up message). */
  deliveredAt: number | null;
  /** When a create attempt packed it into the session's prompt (the create's outcome may be unknown). */
  inPromptAt: number | null;
  /** When the group's postmortem link was noted on the incident in PagerDuty. */
  notedAt: number | null;
}
