import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { type ApiCallObserver, type CallOutcome, observed } from '../metrics.js';
import { describeNetworkFailure } from '../network-errors.js';
import type { Incident } from '../postmortems/model.js';

/** PagerDuty REST API v2 (developer.pagerduty.com/api-reference): the incident lookup /postmortem needs. */

const restIncidentSchema = z.looseObject({
  incident: z.looseObject({
    id: z.string(),
    incident_number: z.number().int().nullish(),
    title: z.string().nullish(),
    status: z.string().nullish(),
    urgency: z.string().nullish(),
    priority: z.looseObject({ summary: z.string().nullish() }).nullish(),
    service: z.looseObject({ id: z.string(), summary: z.string().nullish() }).nullish(),
    created_at: z.string().nullish(),
    resolved_at: z.string().nullish(),
    last_status_change_at: z.string().nullish(),
    last_status_change_by: z.looseObject({ summary: z.string().nullish() }).nullish(),
    html_url: z.string().nullish(),
  }),
});

const ref = z.looseObject({ summary: z.string().nullish() }).nullish();
const logEntrySchema = z.looseObject({
  type: z.string(),
  created_at: z.string(),
  summary: z.string().nullish(),
  agent: ref,
  channel: z.looseObject({ type: z.string().nullish(), summary: z.string().nullish() }).nullish(),
});
const noteSchema = z.looseObject({ content: z.string(), created_at: z.string(), user: ref });
const alertSchema = z.looseObject({
  created_at: z.string(),
  severity: z.string().nullish(),
  summary: z.string().nullish(),
  status: z.string().nullish(),
});
const changeEventSchema = z.looseObject({
  timestamp: z.string().nullish(),
  summary: z.string().nullish(),
  source: z.string().nullish(),
});

export type LogEntry = z.infer<typeof logEntrySchema>;
export type Note = z.infer<typeof noteSchema>;
export type Alert = z.infer<typeof alertSchema>;
export type ChangeEvent = z.infer<typeof changeEventSchema>;

export type PagerDutyErrorCode =
  | 'pagerduty_not_found'
  | 'pagerduty_forbidden'
  | 'pagerduty_rate_limited'
  | 'pagerduty_unavailable';

/** An incident ID PagerDuty never issues (its IDs are upper-case letters and digits). */
const NO_SUCH_INCIDENT = 'postmortem-bot-no-such-incident';

export class PagerDutyApiError extends AppError {
  constructor(
    override readonly code: PagerDutyErrorCode,
    message: string,
    readonly status?: number,
  ) {
    super(code, message);
  }
}

export interface PagerDutyClientOptions {
  apiUrl: string;
  token: string;
  timeoutMs?: number;
  /** 429s are retried this many times, waiting as PagerDuty's rate-limit headers say (capped). */
  rateLimitRetries?: number;
  maxRateLimitWaitMs?: number;
  /** Told about every call (metrics). */
  observe?: ApiCallObserver;
}

const outcomeOf = (err: unknown): CallOutcome => {
  if (!(err instanceof PagerDutyApiError)) return 'bad_response';
  switch (err.code) {
    case 'pagerduty_not_found':
    case 'pagerduty_forbidden':
      return 'rejected';
    case 'pagerduty_rate_limited':
      return 'rate_limited';
    case 'pagerduty_unavailable':
      return err.status === undefined ? 'unreachable' : 'unavailable';
  }
};

export class PagerDutyClient {
  private readonly base: string;

  constructor(private readonly options: PagerDutyClientOptions) {
    this.base = options.apiUrl.replace(/\/+$/, '');
  }

  /** `ref` is an incident ID or number: the REST API accepts either in the path. */
  async getIncident(ref: string): Promise<Incident> {
    const body = await this.call('get_incident', async () =>
      restIncidentSchema.parse(await this.request(`/incidents/${encodeURIComponent(ref)}`)),
    );
    const i = body.incident;
    const resolved = i.status === 'resolved';
    return {
      id: i.id,
      number: i.incident_number ?? null,
      title: i.title ?? '(untitled incident)',
      status: i.status ?? 'unknown',
      serviceId: i.service?.id ?? 'unknown',
      serviceName: i.service?.summary ?? 'unknown service',
      priority: i.priority?.summary ?? null,
      urgency: i.urgency ?? null,
      htmlUrl: i.html_url ?? null,
      createdAt: i.created_at ?? null,
      resolvedAt: resolved ? (i.resolved_at ?? i.last_status_change_at ?? null) : null,
      resolvedBy: resolved ? (i.last_status_change_by?.summary ?? null) : null,
      lastEventAt: i.last_status_change_at ?? i.created_at ?? new Date(0).toISOString(),
    };
  }

  /** The newest incidents' IDs (at most `limit`): proves the token reads incidents. */
  async listIncidents(limit: number): Promise<string[]> {
    const body = await this.call('list_incidents', async () =>
      z
        .looseObject({ incidents: z.array(z.looseObject({ id: z.string() })) })
        .parse(await this.request(`/incidents?${new URLSearchParams({ limit: String(limit) })}`)),
    );
    return body.incidents.map((i) => i.id);
  }

  /** The name of the PagerDuty user with exactly this email, if there is one. */
  async findUserByEmail(email: string): Promise<string | undefined> {
    const body = await this.call('find_user', async () =>
      z
        .looseObject({
          users: z.array(z.looseObject({ email: z.string().nullish(), name: z.string().nullish() })),
        })
        .parse(await this.request(`/users?${new URLSearchParams({ query: email })}`)),
    );
    const user = body.users.find((u) => u.email?.toLowerCase() === email.toLowerCase());
    return user ? (user.name ?? email) : undefined;
  }

  /**
   * Whether the token may write notes, found without writing one: a note to an incident that cannot exist.
   * PagerDuty answers a read-only key 403 for any method but GET, and a key that may write 404 (no such
   * incident); nothing is created either way.
   */
  async mayWriteNotes(fromEmail: string): Promise<boolean> {
    try {
      await this.addNote(NO_SUCH_INCIDENT, 'postmortem-bot doctor: write access check', fromEmail);
    } catch (err) {
      if (err instanceof PagerDutyApiError && err.code === 'pagerduty_not_found') return true;
      if (err instanceof PagerDutyApiError && err.status === 403) return false;
      throw err;
    }
    throw new PagerDutyApiError('pagerduty_unavailable', `PagerDuty accepted a note for ${NO_SUCH_INCIDENT}`);
  }

  /** The incident's log entries (the timeline responders lived), oldest first, all pages up to `max`. */
  async logEntries(incidentId: string, max = 1000): Promise<LogEntry[]> {
    return this.paginate(
      'log_entries',
      `/incidents/${encodeURIComponent(incidentId)}/log_entries`,
      'log_entries',
      logEntrySchema,
      max,
      {
        is_overview: 'true',
        time_zone: 'UTC',
      },
    );
  }

  async notes(incidentId: string): Promise<Note[]> {
    const body = await this.call('notes', async () =>
      z
        .looseObject({ notes: z.array(noteSchema) })
        .parse(await this.request(`/incidents/${encodeURIComponent(incidentId)}/notes`)),
    );
    return body.notes;
  }

  async alerts(incidentId: string, max = 500): Promise<Alert[]> {
    return this.paginate(
      'alerts',
      `/incidents/${encodeURIComponent(incidentId)}/alerts`,
      'alerts',
      alertSchema,
      max,
      {},
    );
  }

  async relatedChangeEvents(incidentId: string): Promise<ChangeEvent[]> {
    const body = await this.call('related_change_events', async () =>
      z
        .looseObject({ change_events: z.array(changeEventSchema) })
        .parse(await this.request(`/incidents/${encodeURIComponent(incidentId)}/related_change_events`)),
    );
    return body.change_events;
  }

  /** Adds a note to the incident; PagerDuty requires the From header with a user's email. */
  async addNote(incidentId: string, content: string, fromEmail: string): Promise<void> {
    await this.call('add_note', () =>
      this.request(`/incidents/${encodeURIComponent(incidentId)}/notes`, {
        method: 'POST',
        body: { note: { content } },
        headers: { from: fromEmail },
      }),
    );
  }

  /** Classic offset pagination: pages of 100 while `more` is true, stopping at `max` items. */
  private async paginate<T>(
    method: string,
    path: string,
    key: string,
    item: z.ZodType<T>,
    max: number,
    params: Record<string, string>,
  ): Promise<T[]> {
    const items: T[] = [];
    for (let offset = 0; items.length < max && offset < 10_000; offset += 100) {
      const query = new URLSearchParams({ ...params, limit: '100', offset: String(offset) });
      const page = (await this.call(method, async () =>
        z
          .looseObject({ [key]: z.array(item), more: z.boolean().nullish() })
          .parse(await this.request(`${path}?${query}`)),
      )) as Record<string, unknown> & { more?: boolean | null };
      const batch = page[key] as T[];
      items.push(...batch);
      if (!page.more || batch.length === 0) break;
    }
    return items.slice(0, max);
  }

  private call<T>(method: string, fn: () => Promise<T>): Promise<T> {
    return observed(this.options.observe, 'pagerduty', method, outcomeOf, fn);
  }

  private async request(
    path: string,
    options: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<unknown> {
    const retries = this.options.rateLimitRetries ?? 4;
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await fetch(`${this.base}${path}`, {
          method: options.method ?? 'GET',
          headers: {
            authorization: `Token token=${this.options.token}`,
            accept: 'application/vnd.pagerduty+json;version=2',
            ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
            ...options.headers,
          },
          body: options.body === undefined ? undefined : JSON.stringify(options.body),
          signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
        });
      } catch (err) {
        throw new PagerDutyApiError(
          'pagerduty_unavailable',
          `PagerDuty API unreachable: ${describeNetworkFailure(err, `${this.base}${path}`, this.options.timeoutMs ?? 10_000).text}`,
        );
      }
      if (res.ok) return res.json();
      await res.body?.cancel();
      if (res.status === 429 && attempt < retries) {
        await sleep(this.rateLimitWait(res.headers, attempt));
        continue;
      }
      if (res.status === 404)
        throw new PagerDutyApiError('pagerduty_not_found', 'not found in PagerDuty', 404);
      if (res.status === 401 || res.status === 403) {
        throw new PagerDutyApiError(
          'pagerduty_forbidden',
          `PagerDuty refused the API token (${res.status}): it is invalid or lacks access to this incident`,
          res.status,
        );
      }
      if (res.status === 429) {
        throw new PagerDutyApiError(
          'pagerduty_rate_limited',
          'PagerDuty API rate limit reached; try again in a minute',
          429,
        );
      }
      throw new PagerDutyApiError('pagerduty_unavailable', `PagerDuty API error ${res.status}`, res.status);
    }
  }

  /** `ratelimit-reset` (seconds) or `Retry-After`, else exponential; never longer than the cap. */
  private rateLimitWait(headers: Headers, attempt: number): number {
    const cap = this.options.maxRateLimitWaitMs ?? 10_000;
    const seconds = Number(headers.get('ratelimit-reset') ?? headers.get('retry-after'));
    const wait = Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : 500 * 2 ** attempt;
    return Math.min(cap, wait);
  }
}
