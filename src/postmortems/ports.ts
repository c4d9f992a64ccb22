import type { ReceivedEvent } from '../store/store.js';
import type { IncidentEvent } from './incident.js';
import type { Evidence, Incident, PostmortemRun, StormMember, ThreadReplyKind } from './model.js';

/**
 * What the postmortem lifecycle needs from the outside world, in its own terms. Adapters implement
 * these (src/slack, src/devin, src/pagerduty, src/evidence) and the composition root (src/app.ts) hands
 * them in. Each port fails only with its DomainError codes (errors.ts).
 */

/** Slack, as far as a run's story goes: its message in the channel, and replies in its thread. */
export interface RunChannel {
  /**
   * Posts the run's message (first time) or updates it, drawn from the run as stored. `callKey` names this
   * call across retries, so a call that waits for a free slot keeps its place. `storm`: the incidents of
   * the run's storm group, when it has more than one (the message is then the group's). Fails with ChatCode.
   */
  postRunMessage(
    run: PostmortemRun,
    callKey: number,
    storm?: readonly StormMember[],
    /** Post it in this thread of the run's channel (the digest's, for a request approved there). */
    inThread?: string,
  ): Promise<{ channel: string; ts: string }>;
  updateRunMessage(
    run: PostmortemRun & { slackTs: string },
    callKey: number,
    storm?: readonly StormMember[],
  ): Promise<void>;
  postThreadReply(
    run: PostmortemRun & { slackTs: string },
    kind: ThreadReplyKind,
    callKey: number,
  ): Promise<void>;
}

/** A channel's approval digest as drawn from the store (digest.ts). */
export interface ApprovalDigestView {
  channel: string;
  /** Approval requests waiting in the channel, and how many of them are shown only in the digest. */
  total: number;
  /** The incidents they are for (a storm group's request is for several). */
  incidents: number;
  inDigest: number;
  /** Of those, the runs the day's budget holds: approving them overrides it (see WaitingApprovals.held). */
  held?: number;
  /** The newest few, newest first. */
  newest: PostmortemRun[];
  /** When the newest request counted was opened: Approve all and Skip all decide those up to then. */
  openedUpTo: number | null;
  /** Runs started by policy whose messages are in the digest's thread: how many, and the newest few. */
  started?: { total: number; newest: PostmortemRun[] } | undefined;
}

/** Slack, for a channel's approval digest: one message, posted once and then updated in place. Fails with ChatCode. */
export interface DigestChannel {
  postDigest(view: ApprovalDigestView, callKey: number): Promise<{ ts: string }>;
  updateDigest(view: ApprovalDigestView, ts: string, callKey: number): Promise<void>;
}

/** A request for a new session, built by prompt.ts. */
export interface SessionRequest {
  prompt: string;
  title: string;
  tags: string[];
  playbook_id?: string;
  knowledge_ids?: string[];
  repos?: string[];
  max_acu_limit?: number;
  structured_output_schema?: Record<string, unknown>;
}

/** A Devin session as polled. */
export interface Session {
  id: string;
  url: string;
  status: string | null;
  statusDetail: string | null;
  tags: string[];
  /** Unix milliseconds of Devin's last update to the session, when it says. */
  updatedAtMs: number | null;
  /** ACUs consumed so far, when Devin says. */
  acusConsumed: number | null;
  pullRequestUrls: string[];
  structuredOutput: unknown;
}

/** Devin. Fails with SessionApiCode. */
export interface SessionApi {
  create(request: SessionRequest): Promise<Session>;
  /** The session carrying exactly this tag, if there is one. */
  findByTag(tag: string): Promise<Session | undefined>;
  get(sessionId: string): Promise<Session>;
  sendMessage(sessionId: string, message: string): Promise<void>;
  /** A session that no longer exists counts as terminated. */
  terminate(sessionId: string): Promise<void>;
}

/** PagerDuty's REST API. Fails with IncidentSourceCode. */
export interface IncidentSource {
  /** By incident ID or number. */
  getIncident(ref: string): Promise<Incident>;
}

/** Writing the postmortem's link back onto the incident (PAGERDUTY_FROM_EMAIL). Fails with IncidentSourceCode. */
export interface IncidentNotes {
  addNote(incidentId: string, content: string): Promise<void>;
}

/** The evidence for a run's prompt. Never fails: a missing source becomes a note in the evidence. */
export interface EvidenceSource {
  gather(run: PostmortemRun): Promise<Evidence>;
}

/** Whether a person may spend: start, approve, retry, run again or stop a postmortem. */
export type Authorization =
  | { allowed: true }
  | {
      allowed: false;
      /**
       * not_an_approver: not in SLACK_APPROVERS; guest: a multi- or single-channel guest; outside: from
       * another workspace or organisation (Slack Connect); bot: not a person.
       */
      reason: 'not_an_approver' | 'guest' | 'outside' | 'bot';
    };

/** Who may start, approve, skip, retry or re-run postmortems (sessions cost money). */
export interface ApproverCheck {
  /** Fails with 'approvers_unavailable' when it cannot be checked (then nobody outside the user list passes). */
  authorize(userId: string): Promise<Authorization>;
  /** The approvers for an explanation, e.g. "<@U1>, <!subteam^S1>", or "everyone in the workspace". */
  describe(): string;
  /** Loads what it needs once at start-up, so a misconfiguration shows in the log straight away. */
  check(): Promise<void>;
}

/** An incident's own channel (INCIDENT_CHANNEL_PATTERN), if it has one. */
export interface IncidentChannelLookup {
  find(incident: Incident): Promise<string | undefined>;
}

/** What a stored webhook event means for the lifecycle (read by the PagerDuty adapter). */
export type StoredEventReading =
  | { kind: 'incident'; type: string; event: IncidentEvent }
  /** Not an incident state event (a ping, a note, an unknown type): nothing to do. */
  | { kind: 'no_action'; type: string }
  /** An incident state event without usable incident data. */
  | { kind: 'unusable'; type: string };

export type StoredEventReader = (stored: ReceivedEvent) => StoredEventReading;
