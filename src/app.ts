import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { App, ExpressReceiver } from '@slack/bolt';
import express, { type Express } from 'express';
import type { Logger } from 'pino';
import type { Config } from './config/config.js';
import { DevinClient } from './devin/client.js';
import { devinSessions } from './devin/sessions.js';
import { EvidenceGatherer } from './evidence/gather.js';
import { healthRouter } from './http/health.js';
import { metricsRouter } from './http/metrics.js';
import { mountPagerDutyWebhook } from './http/pagerduty-webhook.js';
import { rejectSlackClockSkew } from './http/slack-timestamp.js';
import { IntakeFirst } from './jobs/intake-first.js';
import { JobRunner } from './jobs/runner.js';
import { CronTicker } from './jobs/schedule.js';
import { boltLogger } from './logging.js';
import { BotMetrics, observedSlackFetch } from './metrics.js';
import { readStoredEvent } from './pagerduty/incident-events.js';
import { pagerDutyIncidents, pagerDutyNotes } from './pagerduty/incidents.js';
import { PagerDutyClient } from './pagerduty/rest-client.js';
import { SessionBudget } from './postmortems/budget.js';
import { ApprovalDigest, STARTED_RECENT_DEFAULT_MS } from './postmortems/digest.js';
import { EventProcessor } from './postmortems/intake.js';
import { jobHandlers } from './postmortems/job-handlers.js';
import { Lifecycle, SLOT_STATES } from './postmortems/lifecycle.js';
import { MessageWorker } from './postmortems/message-worker.js';
import type { ApproverCheck } from './postmortems/ports.js';
import { purgeJob } from './postmortems/retention.js';
import { PostmortemService } from './postmortems/service.js';
import { SessionFollower } from './postmortems/session-follower.js';
import { SessionWorker } from './postmortems/session-worker.js';
import { SlackApprovers } from './slack/approvers.js';
import { slackChat } from './slack/chat.js';
import { SlackDigestChannel } from './slack/digest.js';
import { configHealth } from './slack/home.js';
import type { BotIdentity } from './slack/identity.js';
import { IncidentChannelFinder } from './slack/incident-channels.js';
import { registerListeners } from './slack/listeners/index.js';
import { ChannelPacer } from './slack/pacer.js';
import { SlackRunChannel } from './slack/run-channel.js';
import { openStore } from './store/open.js';
import type { Store } from './store/store.js';

export interface AppDeps {
  logger: Logger;
  /** Who the bot is in Slack (from auth.test at start-up), so Bolt never calls auth.test itself. */
  botIdentity: BotIdentity;
  /** The clock everything reads (tests move it forward). */
  now?: () => number;
  /** Where /metrics reads from (a fresh registry when not given). */
  metrics?: BotMetrics;
  /**
   * The store failed for good (SQLite: a lost group of writes, a failed fsync; see SqliteStore.fail): the
   * bot has stopped taking webhooks and jobs, and the process should exit so that it restarts from what is
   * on disk (main.ts does). Tests look at it instead.
   */
  onStoreFailure?: (err: Error) => void;
}

export interface PostmortemBot {
  express: Express;
  bolt: App;
  store: Store;
  service: PostmortemService;
  approvers: ApproverCheck;
  jobs: JobRunner;
  /** Follows Devin sessions and tends approvals, a tick at a time. */
  follower: SessionFollower;
  /** Listens on `port` (0 for any) and starts the job workers. */
  start(port: number): Promise<Server>;
  /**
   * Starts the schedules: the follower on SESSION_POLL_CRON, the daily retention purge. Tests that tick
   * the follower themselves leave this out.
   */
  startSchedules(): void;
  /**
   * Graceful: stop intake, finish in-flight requests, ticks and jobs for at most `graceMs` (default 20 s),
   * then close the store, which hands whatever still runs to another replica at once (Postgres).
   */
  stop(options?: { graceMs?: number }): Promise<void>;
}

/**
 * The composition root: everything is built here from the validated config and handed down. Four parts:
 * the HTTP surface (Express with our routes, Bolt on /slack/events), the adapters that implement the
 * domain's ports, the domain itself, and the background (job runner, follower schedule).
 */
export function createPostmortemBot(config: Config, deps: AppDeps): PostmortemBot {
  const { logger } = deps;
  const now = deps.now ?? Date.now;
  let accepting = true;
  let jobs: JobRunner | undefined;
  const store: Store = openStore(config.database, {
    now,
    logger,
    onFailure: (err) => {
      // Nothing more is taken on: webhooks are answered 503 (PagerDuty delivers them again), and no job
      // is claimed. What the store holds on disk is where the restart goes on from.
      accepting = false;
      logger.fatal({ err: err.message, code: 'store_failed' }, 'the store failed; the bot must restart');
      void jobs?.stop({ waitMs: 0 }).catch(() => {});
      deps.onStoreFailure?.(err);
    },
  });
  const metrics = deps.metrics ?? new BotMetrics();
  metrics.observeStore(store, now);
  // Webhooks before background jobs on the one event loop, in a flood.
  const intakeFirst = new IntakeFirst();

  const http = buildHttp(config, {
    ...deps,
    now,
    store,
    metrics,
    accepting: () => accepting,
    intakeFirst,
  });
  const budget = new SessionBudget(store, config.devin.limits, SLOT_STATES, now);
  const adapters = buildAdapters(config, http.bolt, deps.botIdentity, {
    store,
    logger,
    now,
    metrics,
    budget,
  });
  const domain = buildDomain(config, adapters, { store, logger, now, budget });
  const health = configHealth(config);
  registerListeners(http.bolt, {
    service: domain.service,
    digest: domain.digest,
    now,
    health: () => health,
  });

  jobs = new JobRunner({
    ...config.tuning.jobs,
    beforeClaim: () => intakeFirst.beforeClaim(),
    store,
    logger,
    now,
    // A run's job logs its incident too, read from the store only when there is a failure to log.
    logContext: async (job) => {
      const runId = job.payload.runId;
      const run = typeof runId === 'string' ? await store.getRun(runId) : undefined;
      return run ? { incidentId: run.incidentId } : {};
    },
    handlers: jobHandlers({
      ...domain.workers,
      store,
      notes: adapters.notes,
      logger,
      now,
      retentionMs: config.retentionMs,
    }),
  });
  // Each tick of a schedule runs on one replica: the first to take the schedule's lease in the store.
  const lease = { store, owner: randomUUID(), now };
  const schedules = [
    new CronTicker('follow-sessions', config.lifecycle.pollCron, () => domain.follower.tick(), logger, {
      lease,
    }),
    // Daily at 03:17 UTC: one purge job (deduplicated while one waits, too).
    new CronTicker('retention', '17 3 * * *', () => store.enqueueJob(purgeJob()), logger, {
      timezone: 'UTC',
      lease,
    }),
  ];

  let server: Server | undefined;
  return {
    express: http.express,
    bolt: http.bolt,
    store,
    service: domain.service,
    approvers: adapters.approvers,
    jobs,
    follower: domain.follower,
    start(port) {
      return new Promise((resolve, reject) => {
        const s = http.express.listen(port, (err?: Error) => {
          if (err) return reject(err);
          jobs.start();
          resolve(s);
        });
        // Keep-alive sockets from a load balancer must not hold shutdown hostage.
        s.keepAliveTimeout = 5000;
        server = s;
      });
    },
    startSchedules() {
      for (const s of schedules) s.start();
    },
    async stop(options = {}) {
      accepting = false;
      // Real time, not the bot's clock: the deadline is the platform's (main.ts exits at 30 s, Kubernetes
      // kills at its grace period), and what must not be skipped is closing the store.
      const deadline = Date.now() + (options.graceMs ?? SHUTDOWN_GRACE_MS);
      const left = () => Math.max(0, deadline - Date.now());
      const http = (async () => {
        if (!server) return;
        const s = server;
        const closing = new Promise<void>((resolve) => s.close(() => resolve()));
        s.closeIdleConnections();
        if (!(await within(closing, left()))) {
          s.closeAllConnections();
          await closing;
        }
      })();
      // Work stops being taken at once; what is in flight finishes meanwhile, or is handed back.
      const background = Promise.all([
        within(Promise.all(schedules.map((s) => s.stop())), left()),
        jobs.stop({ waitMs: left() }),
      ]);
      await Promise.all([http, background]);
      await store.close();
    },
  };
}

/** How long stop() lets requests, ticks and jobs in flight finish before it closes the store anyway. */
export const SHUTDOWN_GRACE_MS = 20_000;

/** Whether `promise` settled within `ms` (it goes on either way). */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    }),
  ]);
  clearTimeout(timer);
  return settled;
}

/** Express with our own routes first (each with its own body parser), then Bolt on /slack/events. */
function buildHttp(
  config: Config,
  deps: AppDeps & {
    now: () => number;
    store: Store;
    metrics: BotMetrics;
    accepting: () => boolean;
    intakeFirst: IntakeFirst;
  },
): { express: Express; bolt: App } {
  const { logger, now, store, metrics, accepting, intakeFirst } = deps;
  const expressApp = express();
  expressApp.disable('x-powered-by');
  // No ETags: nothing here is cached by its clients (webhooks, Slack, probes, scrapes), and each one is a
  // hash of the response body.
  expressApp.disable('etag');
  // The webhook route first: it is the one under load, and every router before it is looked through on
  // each request.
  mountPagerDutyWebhook(expressApp, {
    store,
    logger,
    webhookSecrets: config.pagerduty.webhookSecrets,
    sharedSecret: config.pagerduty.sharedSecret,
    now,
    retentionMs: config.retentionMs,
    accepting,
    answered: (outcome) => metrics.webhook(outcome),
    arrived: () => intakeFirst.arrived(),
  });
  expressApp.use(healthRouter({ store, accepting, logger }));
  expressApp.use(metricsRouter({ metrics, token: config.metricsToken }));
  // Bolt needs the raw body of /slack/events: no body parser may run before it.
  expressApp.use('/slack/events', rejectSlackClockSkew(now));

  const receiver = new ExpressReceiver({
    signingSecret: config.slack.signingSecret,
    app: expressApp,
    endpoints: '/slack/events',
    processBeforeResponse: false,
    logger: boltLogger(logger),
  });
  const bolt = new App({
    token: config.slack.botToken,
    receiver,
    botId: deps.botIdentity.botId,
    botUserId: deps.botIdentity.botUserId,
    logger: boltLogger(logger),
    clientOptions: {
      ...(config.slack.apiUrl ? { slackApiUrl: config.slack.apiUrl } : {}),
      // Retries belong to our durable job queue, not to an in-memory client queue that a restart loses.
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      timeout: 15_000,
      // Every Web API call (and response_url post) is counted and timed.
      fetch: observedSlackFetch(metrics.apiCall),
    },
  });
  bolt.error(async (err) => {
    logger.error({ err: err.message, code: (err as { code?: string }).code }, 'Slack listener failed');
  });
  return { express: expressApp, bolt };
}

type Adapters = ReturnType<typeof buildAdapters>;

/** Slack, Devin and PagerDuty behind the domain's ports (src/postmortems/ports.ts). */
function buildAdapters(
  config: Config,
  bolt: App,
  identity: BotIdentity,
  deps: { store: Store; logger: Logger; now: () => number; metrics: BotMetrics; budget: SessionBudget },
) {
  const { store, logger, now, metrics, budget } = deps;
  const pagerduty = config.pagerduty.apiToken
    ? new PagerDutyClient({
        apiUrl: config.pagerduty.apiUrl,
        token: config.pagerduty.apiToken,
        observe: metrics.apiCall,
      })
    : undefined;
  const devin = new DevinClient({
    ...config.devin,
    timeoutMs: config.tuning.devinTimeoutMs,
    observe: metrics.apiCall,
  });
  const channelFinder = config.evidence.incidentChannelPattern
    ? new IncidentChannelFinder(config.evidence.incidentChannelPattern, bolt.client, logger, now)
    : undefined;
  return {
    approvers: new SlackApprovers({
      ids: config.slack.approvers,
      client: bolt.client,
      workspace: { teamId: identity.teamId, enterpriseId: identity.enterpriseId },
      logger,
      now,
    }),
    channel: new SlackRunChannel(
      slackChat(bolt.client),
      new ChannelPacer(store, config.tuning.slackChannelIntervalMs, now),
      config.lifecycle.approvalExpireAfterMs,
      budget,
    ),
    digestChannel: new SlackDigestChannel(
      slackChat(bolt.client),
      new ChannelPacer(store, config.tuning.slackChannelIntervalMs, now),
    ),
    channelFinder,
    sessions: devinSessions(devin),
    incidents: pagerduty ? pagerDutyIncidents(pagerduty) : undefined,
    notes:
      pagerduty && config.pagerduty.fromEmail
        ? pagerDutyNotes(pagerduty, config.pagerduty.fromEmail)
        : undefined,
    evidence: new EvidenceGatherer({
      pagerduty,
      slackHistory: config.evidence.includeChannelHistory ? bolt.client : undefined,
      channelFinder,
      routing: config.policy.routing,
      logger,
      now,
    }),
  };
}

/** The postmortem lifecycle: people's requests, PagerDuty's events, the background workers, the follower. */
function buildDomain(
  config: Config,
  adapters: Adapters,
  deps: { store: Store; logger: Logger; now: () => number; budget: SessionBudget },
) {
  const { store, logger, now, budget } = deps;
  const lifecycle = new Lifecycle(store, budget);
  const service = new PostmortemService({
    store,
    lifecycle,
    budget,
    approvers: adapters.approvers,
    incidents: adapters.incidents,
    logger,
    now,
  });
  const events = new EventProcessor({
    store,
    lifecycle,
    policy: config.policy,
    readEvent: readStoredEvent,
    channelFinder: adapters.channelFinder,
    logger,
    now,
    stormWindowMs: config.lifecycle.stormWindowMs,
  });
  const sessions = new SessionWorker({
    store,
    lifecycle,
    sessions: adapters.sessions,
    evidence: adapters.evidence,
    policy: config.policy,
    session: config.devin.session,
    prompt: config.prompt,
    logger,
    now,
    giveUpAfterMs: config.tuning.devinGiveUpAfterMs,
    reconcileWindowMs: config.devin.reconcileWindowMs,
  });
  const digest = new ApprovalDigest({
    store,
    channel: adapters.digestChannel,
    service,
    after: config.slack.digestAfter,
    intervalMs: config.tuning.slackDigestIntervalMs,
    recentMs: config.lifecycle.stormWindowMs > 0 ? config.lifecycle.stormWindowMs : STARTED_RECENT_DEFAULT_MS,
    logger,
    now,
  });
  const messages = new MessageWorker({
    store,
    channel: adapters.channel,
    defaultChannel: config.policy.defaultChannel,
    logger,
    digest,
  });
  const follower = new SessionFollower({
    store,
    lifecycle,
    sessions: adapters.sessions,
    logger,
    now,
    limits: {
      giveUpAfterMs: config.lifecycle.sessionGiveUpAfterMs,
      earlyStartMaxWaitMs: config.lifecycle.earlyStartMaxWaitMs,
    },
    approvalRemindAfterMs: config.lifecycle.approvalRemindAfterMs,
    approvalExpireAfterMs: config.lifecycle.approvalExpireAfterMs,
  });
  return { service, follower, digest, workers: { events, sessions, messages, digest, queue: lifecycle } };
}
