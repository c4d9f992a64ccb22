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
 * A run's life: one explicit state machine, each step an atomic write in the store.
 *
 *   awaiting_approval ──approve──▶ starting ──session created──▶ started
 *          │                          ▲   │
 *          └──skip──▶ skipped ─start──┘   └──Devin refused (4xx) or gave up──▶ failed
 *                               anyway          (Retry: failed ──▶ starting)
 *
 * Auto-started runs and runs a person asked for (/postmortem, Run again) are born in `starting`.
 */
export type RunState = 'awaiting_approval' | 'skipped' | 'starting' | 'started' | 'failed';

/** How the run came about: by priority, by someone approving it, or by someone asking for it. */
export type RunTrigger = 'auto' | 'approval' | 'manual';

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
  devinSessionId: string | null;
  devinUrl: string | null;
  /** Set before the first create call: after it, a retry must look the tag up first. */
  createAttemptedAt: number | null;
  error: string | null;
  /** The incident as it was when the run was opened: what the prompt and messages describe. */
  incident: Incident;
  createdAt: number;
  updatedAt: number;
}
