import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { RUN_STATES } from './postmortems/model.js';
import type { Store, StoreStats } from './store/store.js';

/**
 * Prometheus metrics (prom-client): the process's own (CPU, memory, event loop, GC), what this process did
 * (webhooks answered, calls to Slack, Devin and PagerDuty, sessions created), and what the shared store
 * holds (jobs, runs, ACUs), read from the store at scrape time. With several replicas, each reports its own
 * process; the store's gauges are the same on every replica (aggregate them with max, not sum).
 */

/** How a webhook was answered. */
export type WebhookOutcome =
  | 'accepted'
  | 'duplicate'
  | 'ignored'
  | 'bad_signature'
  | 'invalid'
  | 'store_unavailable'
  | 'shutting_down';

export type Api = 'slack' | 'devin' | 'pagerduty';

/**
 * How a call to an API ended: ok; rejected (the API refused it: 4xx, Slack's ok:false); rate_limited
 * (429); unavailable (5xx); bad_response (a 2xx that is not what the API documents); timeout; unreachable
 * (DNS, refused, reset, TLS: no HTTP answer).
 */
export type CallOutcome =
  | 'ok'
  | 'rejected'
  | 'rate_limited'
  | 'unavailable'
  | 'bad_response'
  | 'timeout'
  | 'unreachable';

export interface ApiCall {
  api: Api;
  /** A fixed name per endpoint (chat.postMessage, create_session, get_incident), never an ID. */
  method: string;
  outcome: CallOutcome;
  seconds: number;
}

/** What a client reports after each call; the clients know nothing else of metrics. */
export type ApiCallObserver = (call: ApiCall) => void;

const PREFIX = 'postmortem_bot_';

export class BotMetrics {
  readonly registry = new Registry();
  private readonly webhooks: Counter<'outcome'>;
  private readonly calls: Counter<'api' | 'method' | 'outcome'>;
  private readonly callSeconds: Histogram<'api' | 'method'>;
  private readonly sessionsCreated: Counter;
  /** Store figures are read once per scrape, however many gauges ask. */
  private stats: Promise<StoreStats | undefined> | undefined;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    this.webhooks = new Counter({
      name: `${PREFIX}webhooks_total`,
      help: 'PagerDuty webhooks answered, by outcome',
      labelNames: ['outcome'],
      registers,
    });
    this.calls = new Counter({
      name: `${PREFIX}api_calls_total`,
      help: 'Calls to Slack, Devin and PagerDuty, by API, method and outcome',
      labelNames: ['api', 'method', 'outcome'],
      registers,
    });
    this.callSeconds = new Histogram({
      name: `${PREFIX}api_call_duration_seconds`,
      help: 'How long calls to Slack, Devin and PagerDuty took, by API and method',
      labelNames: ['api', 'method'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.sessionsCreated = new Counter({
      name: `${PREFIX}devin_sessions_created_total`,
      help: 'Devin sessions this process created',
      registers,
    });
    // Every outcome and state starts at zero, so a rate() or an alert has a series before the first event.
    for (const outcome of [
      'accepted',
      'duplicate',
      'ignored',
      'bad_signature',
      'invalid',
      'store_unavailable',
      'shutting_down',
    ] satisfies WebhookOutcome[]) {
      this.webhooks.inc({ outcome }, 0);
    }
  }

  webhook(outcome: WebhookOutcome): void {
    this.webhooks.inc({ outcome });
  }

  readonly apiCall: ApiCallObserver = (call) => {
    this.calls.inc({ api: call.api, method: call.method, outcome: call.outcome });
    this.callSeconds.observe({ api: call.api, method: call.method }, call.seconds);
    if (call.api === 'devin' && call.method === 'create_session' && call.outcome === 'ok') {
      this.sessionsCreated.inc();
    }
  };

  /** Gauges of the shared store's state, computed when Prometheus scrapes. */
  observeStore(store: Store, now: () => number): void {
    const registers = [this.registry];
    const read = () => {
      this.stats ??= store.stats().catch(() => undefined);
      return this.stats;
    };
    new Gauge({
      name: `${PREFIX}store_up`,
      help: '1 when the store answered the last scrape, 0 when it did not (the store gauges are then stale)',
      registers,
      async collect() {
        this.set((await read()) ? 1 : 0);
      },
    });
    new Gauge({
      name: `${PREFIX}jobs`,
      help: 'Jobs in the shared queue, by state (dead: given up, waiting for a person: npm run jobs)',
      labelNames: ['state'],
      registers,
      async collect() {
        const stats = await read();
        if (!stats) return;
        for (const [state, n] of Object.entries(stats.jobs)) this.set({ state }, n);
      },
    });
    new Gauge({
      name: `${PREFIX}oldest_queued_job_age_seconds`,
      help: 'Age of the oldest job waiting in the shared queue (0 when none waits)',
      registers,
      async collect() {
        const stats = await read();
        if (!stats) return;
        this.set(
          stats.oldestQueuedJobAt === null ? 0 : Math.max(0, (now() - stats.oldestQueuedJobAt) / 1000),
        );
      },
    });
    new Gauge({
      name: `${PREFIX}runs`,
      help: 'Postmortem runs in the store, by state',
      labelNames: ['state'],
      registers,
      async collect() {
        const stats = await read();
        if (!stats) return;
        for (const state of RUN_STATES) this.set({ state }, stats.runs[state] ?? 0);
      },
    });
    new Gauge({
      name: `${PREFIX}devin_acus_consumed`,
      help: 'ACUs consumed by the Devin sessions of the runs in the store, as last polled',
      registers,
      async collect() {
        const stats = await read();
        if (!stats) return;
        this.set(stats.acusConsumed);
      },
    });
  }

  /** The text Prometheus scrapes: every gauge of the store computed from one fresh read. */
  async render(): Promise<string> {
    this.stats = undefined;
    try {
      return await this.registry.metrics();
    } finally {
      this.stats = undefined;
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** Times `fn` and reports it, the outcome told from its result or its error by `outcomeOf`. */
export async function observed<T>(
  observe: ApiCallObserver | undefined,
  api: Api,
  method: string,
  outcomeOf: (err: unknown) => CallOutcome,
  fn: () => Promise<T>,
): Promise<T> {
  if (!observe) return fn();
  const started = performance.now();
  try {
    const result = await fn();
    observe({ api, method, outcome: 'ok', seconds: (performance.now() - started) / 1000 });
    return result;
  } catch (err) {
    observe({ api, method, outcome: outcomeOf(err), seconds: (performance.now() - started) / 1000 });
    throw err;
  }
}

/**
 * A fetch for Slack's Web API client that reports every call: the method from the URL, the outcome from
 * the HTTP status and Slack's `ok` (Slack answers most errors with 200 and ok:false).
 */
export function observedSlackFetch(observe: ApiCallObserver, base: typeof fetch = fetch): typeof fetch {
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const method = slackMethod(url);
    const started = performance.now();
    const report = (outcome: CallOutcome) =>
      observe({ api: 'slack', method, outcome, seconds: (performance.now() - started) / 1000 });
    let res: Response;
    try {
      res = await base(input, init);
    } catch (err) {
      report((err as Error).name === 'TimeoutError' ? 'timeout' : 'unreachable');
      throw err;
    }
    if (res.status === 429) report('rate_limited');
    else if (res.status >= 500) report('unavailable');
    else if (res.status !== 200) report('rejected');
    else {
      const body = (await res
        .clone()
        .json()
        .catch(() => undefined)) as { ok?: unknown } | undefined;
      report(body === undefined ? 'bad_response' : body.ok === true ? 'ok' : 'rejected');
    }
    return res;
  };
}

/** chat.postMessage from https://slack.com/api/chat.postMessage; response_url posts are "response_url". */
function slackMethod(url: string): string {
  const path = new URL(url).pathname;
  const m = /\/api\/([a-zA-Z0-9]+(?:\.[a-zA-Z0-9]+)+)$/.exec(path);
  return m?.[1] ?? 'response_url';
}
