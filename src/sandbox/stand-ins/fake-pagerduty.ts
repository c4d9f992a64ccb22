import { EventEmitter } from 'node:events';
import { listen, sendJson } from './http-server.js';

export interface RestIncident {
  id: string;
  incident_number: number;
  title: string;
  status: string;
  urgency: string;
  priority: { id: string; summary: string } | null;
  service: { id: string; summary: string; type: string };
  created_at: string;
  resolved_at: string | null;
  last_status_change_at: string;
  last_status_change_by: { id: string; summary: string; type: string } | null;
  html_url: string;
}

/**
 * A stand-in for PagerDuty's REST API v2 (developer.pagerduty.com/api-reference): token auth, the v2
 * Accept header, incidents by ID or number, PagerDuty's error bodies, and 429 with its rate-limit headers.
 */
export interface IncidentRecords {
  log_entries: Record<string, unknown>[];
  notes: Record<string, unknown>[];
  alerts: Record<string, unknown>[];
  change_events: Record<string, unknown>[];
}

export class FakePagerDuty {
  readonly incidents: RestIncident[] = [];
  readonly requests: string[] = [];
  /** Log entries, notes, alerts and related change events per incident ID. */
  readonly records = new Map<string, IncidentRecords>();
  readonly postedNotes: { incidentId: string; from: string | undefined; content: string }[] = [];
  /** A note was added through POST /incidents/{id}/notes. */
  readonly events = new EventEmitter<{
    note: [note: { incidentId: string; from: string | undefined; content: string }];
  }>();
  /** Paths (e.g. "/incidents/Q1/alerts") that answer 500, to test one evidence source failing. */
  readonly failing = new Set<string>();
  /**
   * Paths answered 200 with this raw body instead (a proxy's HTML page, a changed response shape), as
   * PagerDuty or something in front of it may do.
   */
  readonly garbled = new Map<string, { contentType: string; body: string }>();
  /** PagerDuty users, for GET /users?query= (the From email of notes must be one). */
  readonly users: { id: string; name: string; email: string }[] = [
    { id: 'PXPGF42', name: 'Ada Lovelace', email: 'ada@example.com' },
  ];
  /** A read-only key: every request that is not a GET answers 403, as PagerDuty answers such a key. */
  readOnly = false;
  private readonly rateLimited: number[] = [];
  url = '';
  private closeServer: () => Promise<void> = async () => {};

  constructor(readonly token = 'pd-rest-token') {}

  async start(): Promise<this> {
    const { url, close } = await listen((req, body, res) => {
      const parsedUrl = new URL(req.url ?? '/', 'http://localhost');
      const path = parsedUrl.pathname;
      this.requests.push(`${req.method === 'GET' ? '' : `${req.method} `}${path}${parsedUrl.search}`);
      if (req.headers.authorization !== `Token token=${this.token}`) {
        return sendJson(res, 401, { error: { message: 'Unauthorized', code: 2006 } });
      }
      if (req.headers.accept !== 'application/vnd.pagerduty+json;version=2') {
        return sendJson(res, 406, { error: { message: 'Not Acceptable', code: 2000 } });
      }
      if (this.rateLimited.length > 0) {
        this.rateLimited.shift();
        return sendJson(
          res,
          429,
          { error: { message: 'Rate Limit Exceeded', code: 2020 } },
          {
            'ratelimit-limit': '960',
            'ratelimit-remaining': '0',
            'ratelimit-reset': '0',
          },
        );
      }
      if (this.readOnly && req.method !== 'GET') {
        return sendJson(res, 403, { error: { message: 'Access Denied', code: 2010 } });
      }
      const garbled = this.garbled.get(path);
      if (garbled) {
        res.writeHead(200, { 'content-type': garbled.contentType });
        res.end(garbled.body);
        return;
      }
      if (this.failing.has(path)) {
        return sendJson(res, 500, { error: { message: 'Internal Server Error', code: 2001 } });
      }
      const sub = /^\/incidents\/([^/]+)\/(log_entries|notes|alerts|related_change_events)$/.exec(path);
      if (sub) {
        const id = decodeURIComponent(sub[1] ?? '');
        if (!this.incidents.some((i) => i.id === id)) {
          return sendJson(res, 404, { error: { message: 'Incident Not Found', code: 5001 } });
        }
        const records = this.records.get(id) ?? { log_entries: [], notes: [], alerts: [], change_events: [] };
        if (sub[2] === 'notes' && req.method === 'POST') {
          const from = req.headers.from as string | undefined;
          if (!from)
            return sendJson(res, 400, { error: { message: 'You must specify a From header', code: 2001 } });
          const note = (JSON.parse(body.toString('utf8')) as { note?: { content?: string } }).note;
          if (!note?.content)
            return sendJson(res, 400, { error: { message: 'Invalid Input Provided', code: 2001 } });
          const posted = { incidentId: id, from, content: note.content };
          this.postedNotes.push(posted);
          sendJson(res, 201, { note: { id: `PN${this.postedNotes.length}`, content: note.content } });
          this.events.emit('note', posted);
          return;
        }
        if (sub[2] === 'notes') return sendJson(res, 200, { notes: records.notes });
        if (sub[2] === 'related_change_events')
          return sendJson(res, 200, { change_events: records.change_events });
        const all = sub[2] === 'log_entries' ? records.log_entries : records.alerts;
        const limit = Math.min(100, Number(parsedUrl.searchParams.get('limit') ?? 25));
        const offset = Number(parsedUrl.searchParams.get('offset') ?? 0);
        const page = all.slice(offset, offset + limit);
        return sendJson(res, 200, {
          [sub[2] ?? '']: page,
          limit,
          offset,
          more: offset + limit < all.length,
          total: null,
        });
      }
      if (req.method === 'GET' && path === '/incidents') {
        const limit = Math.min(100, Number(parsedUrl.searchParams.get('limit') ?? 25));
        return sendJson(res, 200, {
          incidents: this.incidents.slice(0, limit),
          limit,
          offset: 0,
          more: this.incidents.length > limit,
          total: null,
        });
      }
      if (req.method === 'GET' && path === '/users') {
        const query = (parsedUrl.searchParams.get('query') ?? '').toLowerCase();
        const users = this.users.filter(
          (u) => u.email.toLowerCase().includes(query) || u.name.toLowerCase().includes(query),
        );
        return sendJson(res, 200, {
          users: users.map((u) => ({ ...u, type: 'user', summary: u.name })),
          limit: 25,
          offset: 0,
          more: false,
          total: null,
        });
      }
      const m = /^\/incidents\/([^/]+)$/.exec(path);
      if (req.method === 'GET' && m) {
        const ref = decodeURIComponent(m[1] ?? '');
        const incident = this.incidents.find((i) => i.id === ref || String(i.incident_number) === ref);
        if (!incident) return sendJson(res, 404, { error: { message: 'Incident Not Found', code: 5001 } });
        return sendJson(res, 200, { incident });
      }
      return sendJson(res, 404, { error: { message: 'Not Found', code: 2100 } });
    });
    this.url = url;
    this.closeServer = close;
    return this;
  }

  close(): Promise<void> {
    return this.closeServer();
  }

  /** The next `times` requests answer 429. */
  rateLimitNext(times: number): void {
    for (let i = 0; i < times; i++) this.rateLimited.push(i);
  }

  addIncident(overrides: Partial<RestIncident> = {}): RestIncident {
    const id = overrides.id ?? 'Q2K8TBZ1L3KJ7M';
    const incident: RestIncident = {
      id,
      incident_number: 4711,
      title: 'Checkout API p99 latency above 2s',
      status: 'resolved',
      urgency: 'high',
      priority: { id: 'PPRI3', summary: 'P3' },
      service: { id: 'PSVC123', summary: 'Checkout API', type: 'service_reference' },
      created_at: '2024-03-05T09:17:03Z',
      resolved_at: '2024-03-05T10:42:11Z',
      last_status_change_at: '2024-03-05T10:42:11Z',
      last_status_change_by: { id: 'PXPGF42', summary: 'Ada Lovelace', type: 'user_reference' },
      html_url: `https://acme.pagerduty.com/incidents/${id}`,
      ...overrides,
    };
    this.incidents.push(incident);
    return incident;
  }
}
