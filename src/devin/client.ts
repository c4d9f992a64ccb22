import { z } from 'zod';
import { AppError } from '../errors.js';
import { type ApiCallObserver, type CallOutcome, observed } from '../metrics.js';
import { describeNetworkFailure } from '../network-errors.js';
import type { SessionRequest } from '../postmortems/ports.js';

/** Devin API v3 (docs.devin.ai/api-reference/v3): the calls the bot makes, and their failures told apart. */

const sessionSchema = z.looseObject({
  session_id: z.string().min(1),
  url: z.string().min(1),
  status: z.string().nullish(),
  status_detail: z.string().nullish(),
  tags: z.array(z.string()).nullish(),
  updated_at: z.number().nullish(),
  acus_consumed: z.number().nullish(),
  pull_requests: z
    .array(z.looseObject({ pr_url: z.string().nullish(), pr_state: z.string().nullish() }))
    .nullish(),
  structured_output: z.unknown().optional(),
});

export type DevinSession = z.infer<typeof sessionSchema>;

const sessionListSchema = z.looseObject({
  items: z.array(sessionSchema),
  end_cursor: z.string().nullish(),
  has_next_page: z.boolean().nullish(),
});

/** The create body (docs.devin.ai v3): exactly the domain's session request. */
export type CreateSessionRequest = SessionRequest;

export type DevinErrorCode =
  | 'devin_timeout'
  | 'devin_unreachable'
  /** 503 with Retry-After: Devin or a gateway turned the request away before handling it. */
  | 'devin_turned_away'
  | 'devin_unavailable'
  | 'devin_rate_limited'
  | 'devin_rejected'
  | 'devin_bad_response';

/** Connection errors that mean the request never reached Devin. */
export const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH']);

export class DevinApiError extends AppError {
  constructor(
    override readonly code: DevinErrorCode,
    message: string,
    readonly status?: number,
    readonly retryAfterMs?: number,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }

  /** Worth trying again later: Devin was down, slow or rate-limiting, not refusing the request itself. */
  get retryable(): boolean {
    return this.code !== 'devin_rejected';
  }

  /** The network error's code (ECONNREFUSED, ENOTFOUND, …) when the request failed below HTTP. */
  get networkCode(): string | undefined {
    return (this.cause as { cause?: { code?: string } } | undefined)?.cause?.code;
  }
}

export interface DevinClientOptions {
  apiUrl: string;
  apiKey: string;
  orgId: string;
  /** Generous on purpose: a create that times out is only reconciled by its tag later. */
  timeoutMs?: number;
  /** Told about every call (metrics). */
  observe?: ApiCallObserver;
}

const OUTCOME: Record<DevinErrorCode, CallOutcome> = {
  devin_timeout: 'timeout',
  devin_unreachable: 'unreachable',
  devin_turned_away: 'unavailable',
  devin_unavailable: 'unavailable',
  devin_rate_limited: 'rate_limited',
  devin_rejected: 'rejected',
  devin_bad_response: 'bad_response',
};

const outcomeOf = (err: unknown): CallOutcome =>
  err instanceof DevinApiError ? OUTCOME[err.code] : 'unreachable';

export class DevinClient {
  private readonly base: string;
  private readonly timeoutMs: number;

  constructor(private readonly options: DevinClientOptions) {
    this.base = `${options.apiUrl.replace(/\/+$/, '')}/v3/organizations/${encodeURIComponent(options.orgId)}`;
    this.timeoutMs = options.timeoutMs ?? 60_000;
  }

  async createSession(body: CreateSessionRequest): Promise<DevinSession> {
    return this.call('create_session', async () =>
      parseAnswer(sessionSchema, await this.request('POST', '/sessions', body)),
    );
  }

  /** The session carrying this exact tag, if Devin has one (tags are re-checked here, not trusted). */
  async findSessionByTag(tag: string): Promise<DevinSession | undefined> {
    let cursor: string | undefined;
    for (let page = 0; page < 20; page++) {
      const query = new URLSearchParams({ tags: tag });
      if (cursor) query.set('after', cursor);
      const list = await this.call('list_sessions', async () =>
        parseAnswer(sessionListSchema, await this.request('GET', `/sessions?${query}`)),
      );
      const found = list.items.find((s) => s.tags?.includes(tag));
      if (found) return found;
      if (!list.has_next_page || !list.end_cursor) return undefined;
      cursor = list.end_cursor;
    }
    return undefined;
  }

  async getSession(sessionId: string): Promise<DevinSession> {
    return this.call('get_session', async () =>
      parseAnswer(sessionSchema, await this.request('GET', `/sessions/${encodeURIComponent(sessionId)}`)),
    );
  }

  /** Sends the session a message (this also wakes a suspended session). */
  async sendMessage(sessionId: string, message: string): Promise<void> {
    await this.call('send_message', () =>
      this.request('POST', `/sessions/${encodeURIComponent(sessionId)}/messages`, { message }),
    );
  }

  /** Terminates the session. One that no longer exists counts as terminated. */
  async terminateSession(sessionId: string): Promise<void> {
    try {
      await this.call('terminate_session', () =>
        this.request('DELETE', `/sessions/${encodeURIComponent(sessionId)}`),
      );
    } catch (err) {
      if (err instanceof DevinApiError && err.status === 404) return;
      throw err;
    }
  }

  private call<T>(method: string, fn: () => Promise<T>): Promise<T> {
    return observed(this.options.observe, 'devin', method, outcomeOf, fn);
  }

  private async request(method: string, path: string, body?: unknown): Promise<unknown> {
    let res: Response;
    const url = `${this.base}${path}`;
    try {
      res = await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.options.apiKey}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') {
        throw new DevinApiError(
          'devin_timeout',
          `Devin did not answer within ${this.timeoutMs / 1000}s`,
          undefined,
          undefined,
          {
            cause: err,
          },
        );
      }
      throw new DevinApiError(
        'devin_unreachable',
        `Devin API unreachable: ${describeNetworkFailure(err, url, this.timeoutMs).text}`,
        undefined,
        undefined,
        {
          cause: err,
        },
      );
    }
    const text = await res.text().catch(() => '');
    if (res.ok) {
      if (text.trim() === '') return {};
      try {
        return JSON.parse(text);
      } catch {
        throw new DevinApiError(
          'devin_bad_response',
          `Devin answered ${res.status} with a body that is not JSON`,
          res.status,
        );
      }
    }
    const detail = problemDetail(text);
    if (res.status === 429) {
      throw new DevinApiError(
        'devin_rate_limited',
        'Devin API rate limit reached',
        429,
        retryAfterMs(res.headers.get('retry-after')),
      );
    }
    if (res.status === 503 && res.headers.has('retry-after')) {
      throw new DevinApiError(
        'devin_turned_away',
        `Devin API unavailable (503${detail ? `: ${detail}` : ''}); retry after ${res.headers.get('retry-after')}`,
        503,
        retryAfterMs(res.headers.get('retry-after')),
      );
    }
    if (res.status >= 500 || res.status === 408) {
      throw new DevinApiError(
        'devin_unavailable',
        `Devin API error ${res.status}${detail ? `: ${detail}` : ''}`,
        res.status,
      );
    }
    throw new DevinApiError(
      'devin_rejected',
      `Devin refused the request (${res.status}${detail ? `: ${detail}` : ''})`,
      res.status,
    );
  }
}

/** A 2xx answer that is not what the API documents: an unknown outcome, like a dropped connection. */
function parseAnswer<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new DevinApiError(
    'devin_bad_response',
    `Devin answered with an unexpected body (${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'})`,
  );
}

/** RFC 9457 problem+json `detail`, or FastAPI-style 422 `detail: [{loc, msg}]`, as one short line. */
function problemDetail(text: string): string | undefined {
  try {
    const body = JSON.parse(text) as { detail?: unknown; title?: unknown };
    if (typeof body.detail === 'string') return body.detail.slice(0, 300);
    if (Array.isArray(body.detail)) {
      return body.detail
        .map((d: { loc?: unknown[]; msg?: unknown }) => `${(d.loc ?? []).join('.')}: ${String(d.msg ?? '')}`)
        .join('; ')
        .slice(0, 300);
    }
    if (typeof body.title === 'string') return body.title.slice(0, 300);
  } catch {
    // Not JSON: fall through to the status alone.
  }
  return undefined;
}

function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}
