import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { listen, sendJson } from './http-server.js';

export interface FakeSession {
  session_id: string;
  url: string;
  status: string;
  status_detail: string | null;
  tags: string[];
  title: string | null;
  org_id: string;
  created_at: number;
  updated_at: number;
  acus_consumed: number;
  pull_requests: { pr_url: string; pr_state: string }[];
  structured_output: unknown;
  playbook_id: string | null;
}

/** What happened to a session, for anyone watching the stand-in live (the demo page). */
export interface FakeDevinEvents {
  session: [
    session: FakeSession,
    change: 'created' | 'updated' | 'message' | 'message-refused' | 'terminated',
  ];
}

/**
 * What the next create does: answer an error status, answer slowly, or create the session and then
 * answer only after `delayMs` (a client that gives up first sees a timeout, but the session exists).
 */
export type CreateBehaviour =
  | { kind: 'status'; status: number; body?: unknown; headers?: Record<string, string> }
  | { kind: 'create-then-delay'; delayMs: number }
  | { kind: 'reset' };

/**
 * A stand-in for the Devin API v3 (docs.devin.ai/api-reference/v3): bearer auth, one organization,
 * sessions created, listed by tag with cursor pagination and fetched by ID; errors as problem+json and
 * 422 validation details, like the real API.
 */
export class FakeDevin {
  readonly sessions: FakeSession[] = [];
  readonly createRequests: Record<string, unknown>[] = [];
  readonly listRequests: string[] = [];
  readonly getRequests: string[] = [];
  /** Every GET of one session, with when it came (how often sessions are polled, and by how many). */
  readonly polls: { sessionId: string; at: number }[] = [];
  readonly messages: { sessionId: string; message: string }[] = [];
  readonly terminated: string[] = [];
  readonly events = new EventEmitter<FakeDevinEvents>();
  private readonly createQueue: CreateBehaviour[] = [];
  /** Delay before every answer, like a slow Devin. */
  latencyMs = 0;
  /** Until this time (ms since epoch) every request answers 503, like an outage. */
  unavailableUntil = 0;
  /** Until this time every request hangs without an answer (the client times out). */
  hangUntil = 0;
  /**
   * While set, every message sent to a session is answered with this error status (problem+json), as
   * Devin answers a session that takes no more messages (4xx) or an outage (5xx); nothing is delivered.
   */
  refuseMessages: { status: number; detail?: string } | undefined;
  /** How long a new session takes to show up when listing by tag (Devin indexes asynchronously). */
  listVisibilityDelayMs = 0;
  private readonly createdAtMs = new Map<string, number>();
  pageSize = 100;
  url = '';
  private closeServer: () => Promise<void> = async () => {};

  constructor(
    readonly apiKey = 'cog_test_key',
    readonly orgId = 'org-test',
  ) {}

  async start(): Promise<this> {
    const { url, close } = await listen(async (req, body, res) => {
      if (this.latencyMs > 0) await sleep(this.latencyMs);
      if (Date.now() < this.hangUntil) {
        await sleep(this.hangUntil - Date.now());
        if (!req.socket.destroyed) req.socket.destroy();
        return;
      }
      if (Date.now() < this.unavailableUntil) {
        return sendJson(
          res,
          503,
          { title: 'Service Unavailable', status: 503, detail: 'maintenance' },
          {
            'content-type': 'application/problem+json',
          },
        );
      }
      const url = new URL(req.url ?? '/', 'http://localhost');
      const prefix = `/v3/organizations/${this.orgId}`;
      if (req.headers.authorization !== `Bearer ${this.apiKey}`) {
        return problem(res, 401, 'Unauthorized', 'Invalid or missing API key');
      }
      if (!url.pathname.startsWith(`${prefix}/`) && url.pathname !== prefix) {
        return problem(res, 404, 'Not Found', 'Organization not found');
      }
      const rest = url.pathname.slice(prefix.length);
      if (req.method === 'POST' && rest === '/sessions') {
        let parsed: Record<string, unknown>;
        try {
          parsed = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
        } catch {
          return sendJson(res, 422, {
            detail: [{ loc: ['body'], msg: 'JSON decode error', type: 'json_invalid' }],
          });
        }
        this.createRequests.push(parsed);
        const behaviour = this.createQueue.shift();
        if (behaviour?.kind === 'reset') {
          req.socket.destroy();
          return;
        }
        if (behaviour?.kind === 'status') {
          return sendJson(
            res,
            behaviour.status,
            behaviour.body ?? {
              title: 'Service Unavailable',
              status: behaviour.status,
              detail: 'try again later',
            },
            { 'content-type': 'application/problem+json', ...behaviour.headers },
          );
        }
        if (typeof parsed.prompt !== 'string' || parsed.prompt.length === 0) {
          return sendJson(res, 422, {
            detail: [{ loc: ['body', 'prompt'], msg: 'Field required', type: 'missing' }],
          });
        }
        if (Array.isArray(parsed.tags) && parsed.tags.length > 50) {
          return sendJson(res, 422, {
            detail: [{ loc: ['body', 'tags'], msg: 'at most 50 tags', type: 'too_long' }],
          });
        }
        const session = this.create(parsed);
        if (behaviour?.kind === 'create-then-delay') await sleep(behaviour.delayMs);
        if (res.destroyed || req.socket.destroyed) return;
        return sendJson(res, 200, session);
      }
      if (req.method === 'GET' && rest === '/sessions') {
        this.listRequests.push(url.search);
        const tags = url.searchParams.getAll('tags').flatMap((t) => t.split(','));
        const visibleBefore = Date.now() - this.listVisibilityDelayMs;
        const matching = this.sessions.filter(
          (s) =>
            tags.every((t) => s.tags.includes(t)) &&
            (this.createdAtMs.get(s.session_id) ?? 0) <= visibleBefore,
        );
        const after = Number(url.searchParams.get('after') ?? 0);
        const first = Number(url.searchParams.get('first') ?? this.pageSize);
        const page = matching.slice(after, after + Math.min(first, this.pageSize));
        const next = after + page.length;
        return sendJson(res, 200, {
          items: page,
          end_cursor: next < matching.length ? String(next) : null,
          has_next_page: next < matching.length,
          total: matching.length,
        });
      }
      const one = /^\/sessions\/([^/]+)(\/messages)?$/.exec(rest);
      const session = one
        ? this.sessions.find((s) => s.session_id === decodeURIComponent(one[1] ?? ''))
        : undefined;
      if (one && !session) return problem(res, 404, 'Not Found', 'Session not found');
      if (session && req.method === 'GET' && !one?.[2]) {
        this.getRequests.push(session.session_id);
        this.polls.push({ sessionId: session.session_id, at: Date.now() });
        return sendJson(res, 200, session);
      }
      if (session && req.method === 'POST' && one?.[2]) {
        const message = (JSON.parse(body.toString('utf8') || '{}') as { message?: unknown }).message;
        if (typeof message !== 'string' || message.length === 0) {
          return sendJson(res, 422, {
            detail: [{ loc: ['body', 'message'], msg: 'Field required', type: 'missing' }],
          });
        }
        if (this.refuseMessages) {
          const { status, detail } = this.refuseMessages;
          problem(
            res,
            status,
            status >= 500 ? 'Service Unavailable' : 'Conflict',
            detail ?? 'message refused',
          );
          this.events.emit('session', session, 'message-refused');
          return;
        }
        this.messages.push({ sessionId: session.session_id, message });
        // A message wakes a suspended session and sets Devin working again.
        Object.assign(session, { status: 'running', status_detail: 'working', updated_at: nowS() });
        sendJson(res, 200, { detail: 'Message sent' });
        this.events.emit('session', session, 'message');
        return;
      }
      if (session && req.method === 'DELETE' && !one?.[2]) {
        this.terminated.push(session.session_id);
        Object.assign(session, { status: 'exit', status_detail: null, updated_at: nowS() });
        sendJson(res, 200, session);
        this.events.emit('session', session, 'terminated');
        return;
      }
      return problem(res, 404, 'Not Found', `No route ${req.method} ${url.pathname}`);
    });
    this.url = url;
    this.closeServer = close;
    return this;
  }

  close(): Promise<void> {
    return this.closeServer();
  }

  /** Moves a session on, as Devin would: status, status_detail, pull requests, structured output. */
  update(sessionId: string, change: Partial<FakeSession>): void {
    const session = this.sessions.find((s) => s.session_id === sessionId);
    if (!session) throw new Error(`no session ${sessionId}`);
    Object.assign(session, change, { updated_at: nowS() });
    this.events.emit('session', session, 'updated');
  }

  /** Queue behaviours for the next creates, in order; creates beyond the queue succeed at once. */
  nextCreates(...behaviours: CreateBehaviour[]): void {
    this.createQueue.push(...behaviours);
  }

  private create(body: Record<string, unknown>): FakeSession {
    const n = this.sessions.length + 1;
    const id = `devin-${String(n).padStart(8, '0')}`;
    const now = Math.floor(Date.now() / 1000);
    const session: FakeSession = {
      session_id: id,
      url: `https://app.devin.ai/sessions/${id.slice('devin-'.length)}`,
      status: 'new',
      status_detail: null,
      tags: (body.tags as string[] | undefined) ?? [],
      title: (body.title as string | undefined) ?? null,
      org_id: this.orgId,
      created_at: now,
      updated_at: now,
      acus_consumed: 0,
      pull_requests: [],
      structured_output: null,
      playbook_id: (body.playbook_id as string | undefined) ?? null,
    };
    this.sessions.push(session);
    this.createdAtMs.set(id, Date.now());
    this.events.emit('session', session, 'created');
    return session;
  }
}

const nowS = () => Math.floor(Date.now() / 1000);

function problem(
  res: import('node:http').ServerResponse,
  status: number,
  title: string,
  detail: string,
): void {
  sendJson(
    res,
    status,
    { type: 'about:blank', title, status, detail },
    { 'content-type': 'application/problem+json' },
  );
}
