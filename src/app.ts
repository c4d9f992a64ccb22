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
import { pagerDutyWebhookRouter } from './http/pagerduty-webhook.js';
import { rejectSlackClockSkew } from './http/slack-timestamp.js';
import { JobRunner } from './jobs/runner.js';
import { CronTicker } from './jobs/schedule.js';
import { boltLogger } from './logging.js';
import { BotMetrics, observedSlackFetch } from './metrics.js';
import { readStoredEvent } from './pagerduty/incident-events.js';
import { pagerDutyIncidents, pagerDutyNotes } from './pagerduty/incidents.js';
import { PagerDutyClient } from './pagerduty/rest-client.js';
import { EventProcessor } from './postmortems/intake.js';
import { jobHandlers } from './postmortems/job-handlers.js';
import { Lifecycle } from './postmortems/lifecycle.js';
import { MessageWorker } from './postmortems/message-worker.js';
import type { ApproverCheck } from './postmortems/ports.js';
import { purgeJob } from './postmortems/retention.js';
import { PostmortemService } from './postmortems/service.js';
import { SessionFollower } from './postmortems/session-follower.js';
import { SessionWorker } from './postmortems/session-worker.js';
import { SlackApprovers } from './slack/approvers.js';
import { slackChat } from './slack/chat.js';
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
  /** Graceful: stop intake, finish in-flight requests and jobs, close the store. */
  stop(): Promise<void>;
}

/**
 * The composition root: everything is built here from the validated config and handed down. Four parts:
 * the HTTP surface (Express with our routes, Bolt on /slack/events), the adapters that implement the
 * domain's ports, the domain itself, and the background (job runner, follower schedule).
 */
export function createPostmortemBot(config: Config, deps: AppDeps): PostmortemBot {
  const { logger } = deps;
  const now = deps.now ?? Date.now;
  const store: Store = openStore(config.database, { now, logger });
  const metrics = deps.metrics ?? new BotMetrics();
  metrics.observeStore(store, now);
  let accepting = true;

  const http = buildHttp(config, { ...deps, now, store, metrics, accepting: () => accepting });
  const adapters = buildAdapters(config, http.bolt, deps.botIdentity, { logger, now, metrics });
  const domain = buildDomain(config, adapters, { store, logger, now });
  const health = configHealth(config);
  registerListeners(http.bolt, { service: domain.service, now, health: () => health });

  const jobs = new JobRunner({
    ...config.tuning.jobs,
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
  const schedules = [
    new CronTicker('follow-sessions', config.lifecycle.pollCron, () => domain.follower.tick(), logger),
    // Daily at 03:17 UTC: one purge job (deduplicated while one waits), whichever replica queues it.
    new CronTicker('retention', '17 3 * * *', () => store.enqueueJob(purgeJob()), logger, 'UTC'),
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
    async stop() {
      accepting = false;
      if (server) {
        const closing = new Promise<void>((resolve) => server?.close(() => resolve()));
        server.closeIdleConnections();
        await closing;
      }
      for (const s of schedules) await s.stop();
      await jobs.stop();
      await store.close();
    },
  };
}

/** Express with our own routes first (each with its own body parser), then Bolt on /slack/events. */
function buildHttp(
  config: Config,
  deps: AppDeps & { now: () => number; store: Store; metrics: BotMetrics; accepting: () => boolean },
): { express: Express; bolt: App } {
  const { logger, now, store, metrics, accepting } = deps;
  const expressApp = express();
  expressApp.disable('x-powered-by');
  expressApp.use(healthRouter({ store, accepting, logger }));
  expressApp.use(metricsRouter({ metrics, token: config.metricsToken }));
  expressApp.use(
    pagerDutyWebhookRouter({
      store,
      logger,
      webhookSecrets: config.pagerduty.webhookSecrets,
      sharedSecret: config.pagerduty.sharedSecret,
      now,
      retentionMs: config.retentionMs,
      accepting,
      answered: (outcome) => metrics.webhook(outcome),
    }),
  );
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
  deps: { logger: Logger; now: () => number; metrics: BotMetrics },
) {
  const { logger, now, metrics } = deps;
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
      new ChannelPacer(config.tuning.slackChannelIntervalMs, now),
      config.lifecycle.approvalExpireAfterMs,
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
  deps: { store: Store; logger: Logger; now: () => number },
) {
  const { store, logger, now } = deps;
  const lifecycle = new Lifecycle(store);
  const service = new PostmortemService({
    store,
    lifecycle,
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
  const messages = new MessageWorker({
    store,
    channel: adapters.channel,
    defaultChannel: config.policy.defaultChannel,
    logger,
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
  return { service, follower, workers: { events, sessions, messages } };
}
