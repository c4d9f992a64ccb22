import { AppError, RetryableError } from '../errors.js';

/**
 * The failures the domain can meet, one closed set of codes per boundary. Adapters (src/devin,
 * src/pagerduty, src/slack) translate their clients' errors into these; the domain never sees a client's
 * error class. Two places read the codes: `retryDecision` below (what a job does next) and
 * slack/replies.ts `failureText` (what a person reads). Both switch exhaustively, so a new code does not
 * compile until both say what it means.
 */

/** Looking an incident up, and writing a note on it (PagerDuty's REST API). */
export const INCIDENT_SOURCE_CODES = [
  /** No PAGERDUTY_API_TOKEN: incidents cannot be looked up. */
  'incident_source_missing',
  'incident_not_found',
  'incident_source_forbidden',
  'incident_source_rate_limited',
  'incident_source_unavailable',
  /** PagerDuty answered with a body that is not what its API documents. */
  'incident_source_bad_response',
] as const;
export type IncidentSourceCode = (typeof INCIDENT_SOURCE_CODES)[number];

/** Devin sessions. Each code says whether a create may have happened without our knowing. */
export const SESSION_API_CODES = [
  /** The request never left (connection refused, DNS): nothing happened. */
  'session_api_not_sent',
  /** No answer in time, or the connection broke mid-way: it may have happened. */
  'session_api_timeout',
  'session_api_connection_lost',
  /** 500/502/504/408, or a 503 without Retry-After (a proxy losing the upstream): it may have happened. */
  'session_api_unavailable',
  /** 503 with Retry-After: turned away before it was handled (overload, maintenance); try then. */
  'session_api_turned_away',
  /** 2xx with a body we cannot read: it happened, but we do not know the result. */
  'session_api_bad_response',
  /** 429: not done; try later. */
  'session_api_rate_limited',
  /** 4xx: Devin refused the request itself; trying again cannot help. */
  'session_api_rejected',
  /** 404 on a session: it no longer exists. */
  'session_not_found',
] as const;
export type SessionApiCode = (typeof SESSION_API_CODES)[number];
export const isIncidentSourceError = (err: unknown): err is DomainError<IncidentSourceCode> =>
  err instanceof DomainError && (INCIDENT_SOURCE_CODES as readonly string[]).includes(err.code);
export const isSessionApiCode = (code: DomainErrorCode): code is SessionApiCode =>
  (SESSION_API_CODES as readonly string[]).includes(code);

/** Posting and updating a run's message (Slack). */
export type ChatCode =
  /** Our own pacing: the channel's next free slot is later. */
  | 'chat_paced'
  | 'chat_rate_limited'
  | 'chat_unavailable'
  /** The channel is gone, archived or private without the bot: the default channel should take it. */
  | 'chat_channel_unusable'
  | 'chat_refused';

export type ApproverCode = 'approvers_unavailable';

/** Waits the lifecycle itself decides on. */
export type LifecycleCode =
  /** A create's outcome is unknown and its tag is not listed yet: look again before creating. */
  | 'create_unconfirmed'
  /** A run kept changing under a step that needs a stable state: try the step again. */
  | 'run_busy'
  /** A thread reply waits for its run's message to be posted. */
  | 'message_pending'
  /** The routed channel refused the message: post it again at once, in the default channel. */
  | 'message_rerouted'
  | 'message_missing'
  /** A channel's digest was drawn moments ago: its next redraw waits, taking every change since in one. */
  | 'digest_coalescing'
  /** A started run's message goes in its channel's digest thread, and the digest is not posted yet. */
  | 'digest_pending';

export type DomainErrorCode = IncidentSourceCode | SessionApiCode | ChatCode | ApproverCode | LifecycleCode;

export class DomainError<C extends DomainErrorCode = DomainErrorCode> extends AppError {
  constructor(
    override readonly code: C,
    message: string,
    options?: {
      cause?: unknown;
      /** The earliest time to try again that the other side asked for (Retry-After), if any. */
      retryAfterMs?: number | undefined;
    },
  ) {
    super(code, message, options);
    this.retryAfterMs = options?.retryAfterMs;
  }

  readonly retryAfterMs: number | undefined;
}

export const isDomainError = <C extends DomainErrorCode>(
  err: unknown,
  ...codes: C[]
): err is DomainError<C> =>
  err instanceof DomainError && (codes.length === 0 || (codes as DomainErrorCode[]).includes(err.code));

/** A step declared nowhere in the lifecycle table: a bug in the code, never a condition to handle. */
export class LifecycleBug extends Error {
  override name = 'LifecycleBug';
}

export type RetryDecision =
  /** Try again after the growing backoff (at least `afterMs`, when the other side said so). */
  | { kind: 'backoff'; afterMs: number | undefined }
  /** Try again exactly then: a reserved slot or a planned look, not a failure. */
  | { kind: 'at'; afterMs: number }
  /** Trying again cannot help. */
  | { kind: 'give_up' };

/** What a job does after a domain failure: the one place codes become retry decisions. */
export function retryDecision(err: DomainError): RetryDecision {
  const code = err.code;
  switch (code) {
    case 'incident_source_rate_limited':
    case 'incident_source_unavailable':
    case 'incident_source_bad_response':
    case 'session_api_not_sent':
    case 'session_api_timeout':
    case 'session_api_connection_lost':
    case 'session_api_unavailable':
    case 'session_api_bad_response':
    case 'session_api_rate_limited':
    case 'session_api_turned_away':
    case 'chat_rate_limited':
    case 'chat_unavailable':
    case 'approvers_unavailable':
    case 'run_busy':
      return { kind: 'backoff', afterMs: err.retryAfterMs };
    case 'chat_paced':
    case 'create_unconfirmed':
    case 'message_pending':
    case 'message_rerouted':
    case 'digest_coalescing':
    case 'digest_pending':
      return { kind: 'at', afterMs: err.retryAfterMs ?? 0 };
    case 'incident_source_missing':
    case 'incident_not_found':
    case 'incident_source_forbidden':
    case 'session_api_rejected':
    case 'session_not_found':
    case 'chat_channel_unusable':
    case 'chat_refused':
    case 'message_missing':
      return { kind: 'give_up' };
  }
}

/** Whether a session call that failed this way may have taken effect all the same. */
export function outcomeUnknown(code: SessionApiCode): boolean {
  switch (code) {
    case 'session_api_timeout':
    case 'session_api_connection_lost':
    case 'session_api_unavailable':
    case 'session_api_bad_response':
      return true;
    case 'session_api_not_sent':
    case 'session_api_rate_limited':
    case 'session_api_turned_away':
    case 'session_api_rejected':
    case 'session_not_found':
      return false;
  }
}

export const isRetryable = (err: DomainError): boolean => retryDecision(err).kind !== 'give_up';

/**
 * A domain failure as the job runner understands it: "try again then" (RetryableError) or "for good"
 * (AppError). Anything that is not a DomainError passes unchanged: the runner treats it as a bug.
 */
export function toJobFailure(err: unknown): unknown {
  if (!(err instanceof DomainError)) return err;
  const decision = retryDecision(err);
  switch (decision.kind) {
    case 'backoff':
      return new RetryableError(err.code, err.message, decision.afterMs, { cause: err });
    case 'at':
      return new RetryableError(err.code, err.message, decision.afterMs, { cause: err, exact: true });
    case 'give_up':
      return err;
  }
}
