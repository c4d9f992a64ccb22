import {
  type ChatCode,
  DomainError,
  type IncidentSourceCode,
  outcomeUnknown,
  type SessionApiCode,
} from '../../src/postmortems/errors.js';
import type { Evidence, Incident, PostmortemRun, ThreadReplyKind } from '../../src/postmortems/model.js';
import type {
  ApproverCheck,
  Authorization,
  EvidenceSource,
  IncidentNotes,
  IncidentSource,
  RunChannel,
  Session,
  SessionApi,
  SessionRequest,
} from '../../src/postmortems/ports.js';

/**
 * In-memory fakes of the domain's ports (src/postmortems/ports.ts), for unit tests of the domain against
 * its own interfaces. Each keeps its port's contract: it fails only with that port's DomainError codes,
 * and a failure means what the code says (a create that timed out may still have made a session; one
 * that was rejected or never sent did not). The flow tests drive the real adapters over HTTP instead.
 */

type SessionMethod = 'create' | 'findByTag' | 'get' | 'sendMessage' | 'terminate';

interface PlannedFailure {
  code: SessionApiCode;
  times: number;
  retryAfterMs?: number | undefined;
  /** create only: the session is made all the same, and listed by tag from this time on. */
  createdListedAt?: number | undefined;
}

/**
 * Devin sessions. Sessions it creates are listed by tag at once unless a failure plan says otherwise;
 * a session it no longer has answers session_not_found, except to terminate (gone counts as terminated).
 */
export class FakeSessionApi implements SessionApi {
  /** Every session that exists, by ID, including ones a failed create made. */
  readonly sessions = new Map<string, Session>();
  /** Every call, in order, with its argument (the request, tag, session ID or message). */
  readonly calls: { method: SessionMethod; arg: unknown }[] = [];
  readonly creates: SessionRequest[] = [];
  readonly messages: { sessionId: string; message: string }[] = [];
  readonly terminated: string[] = [];
  /** Runs just before a create answers, after the session exists: a person acting meanwhile. */
  whileCreating: (() => Promise<void>) | undefined;
  private readonly listedAt = new Map<string, number>();
  private readonly plans = new Map<SessionMethod, PlannedFailure[]>();
  private next = 1;

  constructor(private readonly now: () => number) {}

  /**
   * The next `times` calls of `method` fail with `code` (Infinity: until `heal`). For a create whose
   * outcome is unknown (a timeout, a 5xx, an unreadable answer), `createdListedAt` says the session was
   * made anyway and from when listing by tag shows it (Devin indexes new sessions asynchronously).
   */
  fail(
    method: SessionMethod,
    code: SessionApiCode,
    options: { times?: number; retryAfterMs?: number; createdListedAt?: number } = {},
  ): void {
    if (options.createdListedAt !== undefined && (method !== 'create' || !outcomeUnknown(code))) {
      throw new Error(`a ${method} failing with ${code} cannot have created a session`);
    }
    const plans = this.plans.get(method) ?? [];
    plans.push({
      code,
      times: options.times ?? 1,
      retryAfterMs: options.retryAfterMs,
      createdListedAt: options.createdListedAt,
    });
    this.plans.set(method, plans);
  }

  heal(method: SessionMethod): void {
    this.plans.delete(method);
  }

  callsOf(method: SessionMethod): unknown[] {
    return this.calls.filter((c) => c.method === method).map((c) => c.arg);
  }

  /** Devin's side moving on: the session's status, detail, PRs or output change now. */
  update(
    sessionId: string,
    change: Partial<Pick<Session, 'status' | 'statusDetail' | 'pullRequestUrls' | 'structuredOutput'>>,
  ): void {
    const session = this.sessions.get(sessionId);
    if (!session) throw new Error(`no session ${sessionId}`);
    this.sessions.set(sessionId, { ...session, ...change, updatedAtMs: this.now() });
  }

  /** The session is deleted or archived on Devin's side. */
  delete(sessionId: string): void {
    this.sessions.delete(sessionId);
    this.listedAt.delete(sessionId);
  }

  async create(request: SessionRequest): Promise<Session> {
    this.calls.push({ method: 'create', arg: request });
    this.creates.push(request);
    const failure = this.planned('create');
    if (failure && failure.createdListedAt === undefined) throw this.error(failure);
    const session = this.make(request, failure?.createdListedAt ?? this.now());
    await this.whileCreating?.();
    if (failure) throw this.error(failure);
    return session;
  }

  async findByTag(tag: string): Promise<Session | undefined> {
    this.calls.push({ method: 'findByTag', arg: tag });
    const failure = this.planned('findByTag');
    if (failure) throw this.error(failure);
    return [...this.sessions.values()].find(
      (s) => s.tags.includes(tag) && (this.listedAt.get(s.id) ?? 0) <= this.now(),
    );
  }

  async get(sessionId: string): Promise<Session> {
    this.calls.push({ method: 'get', arg: sessionId });
    const failure = this.planned('get');
    if (failure) throw this.error(failure);
    return this.existing(sessionId);
  }

  async sendMessage(sessionId: string, message: string): Promise<void> {
    this.calls.push({ method: 'sendMessage', arg: sessionId });
    const failure = this.planned('sendMessage');
    if (failure) throw this.error(failure);
    this.existing(sessionId);
    this.messages.push({ sessionId, message });
  }

  async terminate(sessionId: string): Promise<void> {
    this.calls.push({ method: 'terminate', arg: sessionId });
    const failure = this.planned('terminate');
    if (failure) throw this.error(failure);
    this.terminated.push(sessionId);
    const session = this.sessions.get(sessionId);
    if (session) this.sessions.set(sessionId, { ...session, status: 'exit', updatedAtMs: this.now() });
  }

  private make(request: SessionRequest, listedAt: number): Session {
    const id = `devin-${this.next++}`;
    const session: Session = {
      id,
      url: `https://app.devin.ai/sessions/${id}`,
      status: 'new',
      statusDetail: null,
      tags: [...request.tags],
      updatedAtMs: this.now(),
      acusConsumed: null,
      pullRequestUrls: [],
      structuredOutput: null,
    };
    this.sessions.set(id, session);
    this.listedAt.set(id, listedAt);
    return session;
  }

  private existing(sessionId: string): Session {
    const session = this.sessions.get(sessionId);
    if (!session) throw new DomainError('session_not_found', `Devin has no session ${sessionId}`);
    return session;
  }

  private planned(method: SessionMethod): PlannedFailure | undefined {
    const plans = this.plans.get(method);
    const plan = plans?.[0];
    if (!plans || !plan) return undefined;
    plan.times--;
    if (plan.times <= 0) plans.shift();
    return plan;
  }

  private error(plan: PlannedFailure): DomainError<SessionApiCode> {
    return new DomainError(plan.code, `Devin: ${plan.code}`, { retryAfterMs: plan.retryAfterMs });
  }
}

/** Slack as a run's channel: every post, update and thread reply, as the run looked when it was sent. */
export class FakeRunChannel implements RunChannel {
  readonly posts: { channel: string; ts: string; run: PostmortemRun; callKey: number }[] = [];
  readonly updates: { channel: string; ts: string; run: PostmortemRun; callKey: number }[] = [];
  readonly replies: { channel: string; threadTs: string; kind: ThreadReplyKind; callKey: number }[] = [];
  /** Channels that refuse the bot (archived, private without it). */
  readonly unusable = new Set<string>();
  private readonly failures: { code: ChatCode; retryAfterMs: number | undefined }[] = [];
  private ts = 1;

  /** The next call fails with `code` (e.g. chat_paced with the slot it reserved). */
  failNext(code: ChatCode, retryAfterMs?: number): void {
    this.failures.push({ code, retryAfterMs });
  }

  async postRunMessage(run: PostmortemRun, callKey: number): Promise<{ channel: string; ts: string }> {
    this.check(run.channel);
    const ts = `1700000000.${String(this.ts++).padStart(6, '0')}`;
    this.posts.push({ channel: run.channel, ts, run, callKey });
    return { channel: run.channel, ts };
  }

  async updateRunMessage(run: PostmortemRun & { slackTs: string }, callKey: number): Promise<void> {
    this.check(run.channel);
    this.updates.push({ channel: run.channel, ts: run.slackTs, run, callKey });
  }

  async postThreadReply(
    run: PostmortemRun & { slackTs: string },
    kind: ThreadReplyKind,
    callKey: number,
  ): Promise<void> {
    this.check(run.channel);
    this.replies.push({ channel: run.channel, threadTs: run.slackTs, kind, callKey });
  }

  private check(channel: string): void {
    const failure = this.failures.shift();
    if (failure) {
      throw new DomainError(failure.code, `Slack: ${failure.code}`, { retryAfterMs: failure.retryAfterMs });
    }
    if (this.unusable.has(channel)) {
      throw new DomainError('chat_channel_unusable', `Slack: channel_not_found (${channel})`);
    }
  }
}

/** SLACK_APPROVERS: these user IDs may decide; `unavailable` is a user-group lookup that fails. */
export class FakeApprovers implements ApproverCheck {
  readonly users: Set<string>;
  unavailable = false;
  readonly asked: string[] = [];

  constructor(users: readonly string[] = ['U_APPROVER']) {
    this.users = new Set(users);
  }

  async authorize(userId: string): Promise<Authorization> {
    this.asked.push(userId);
    this.throwIfUnavailable();
    return this.users.has(userId) ? { allowed: true } : { allowed: false, reason: 'not_an_approver' };
  }

  describe(): string {
    return [...this.users].map((u) => `<@${u}>`).join(', ');
  }

  async check(): Promise<void> {
    this.throwIfUnavailable();
  }

  private throwIfUnavailable(): void {
    if (this.unavailable) {
      throw new DomainError(
        'approvers_unavailable',
        'SLACK_APPROVERS: cannot read user group S1 (ratelimited): try again shortly',
      );
    }
  }
}

/** PagerDuty's incidents, looked up by ID or by number; an unknown one is incident_not_found. */
export class FakeIncidentSource implements IncidentSource {
  readonly incidents = new Map<string, Incident>();
  readonly lookups: string[] = [];
  private readonly failures: IncidentSourceCode[] = [];

  constructor(incidents: readonly Incident[] = []) {
    for (const incident of incidents) this.incidents.set(incident.id, incident);
  }

  failNext(code: IncidentSourceCode): void {
    this.failures.push(code);
  }

  async getIncident(ref: string): Promise<Incident> {
    this.lookups.push(ref);
    const failure = this.failures.shift();
    if (failure) throw new DomainError(failure, `PagerDuty: ${failure}`);
    const incident =
      this.incidents.get(ref) ?? [...this.incidents.values()].find((i) => String(i.number) === ref);
    if (!incident) throw new DomainError('incident_not_found', `PagerDuty has no incident ${ref}`);
    return incident;
  }
}

/** Notes written onto incidents. */
export class FakeIncidentNotes implements IncidentNotes {
  readonly notes: { incidentId: string; content: string }[] = [];
  private readonly failures: IncidentSourceCode[] = [];

  failNext(code: IncidentSourceCode): void {
    this.failures.push(code);
  }

  async addNote(incidentId: string, content: string): Promise<void> {
    const failure = this.failures.shift();
    if (failure) throw new DomainError(failure, `PagerDuty: ${failure}`);
    this.notes.push({ incidentId, content });
  }
}

/** Evidence for a run's prompt; it never fails, like the port says. Each gathering is numbered. */
export class FakeEvidence implements EvidenceSource {
  readonly gathered: string[] = [];

  async gather(run: PostmortemRun): Promise<Evidence> {
    this.gathered.push(run.id);
    return {
      timeline: [`gathering ${this.gathered.length}: ${run.incident.title} triggered`],
      notes: [],
    };
  }
}
