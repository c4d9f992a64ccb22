import type { Server } from 'node:http';
import { App, type Logger as BoltLogger, ExpressReceiver, LogLevel } from '@slack/bolt';
import express, { type Express } from 'express';
import type { Logger } from 'pino';
import type { Config } from './config/config.js';
import { DevinClient } from './devin/client.js';
import { EvidenceGatherer } from './evidence/gather.js';
import { healthRouter } from './http/health.js';
import { pagerDutyWebhookRouter } from './http/pagerduty-webhook.js';
import { rejectSlackClockSkew } from './http/slack-timestamp.js';
import { JobRunner, type JobRunnerOptions } from './jobs/runner.js';
import { CronTicker } from './jobs/schedule.js';
import { PagerDutyClient } from './pagerduty/rest-client.js';
import type { ThreadReplyKind } from './postmortems/follow.js';
import { RunJobs } from './postmortems/run-jobs.js';
import { PostmortemService } from './postmortems/service.js';
import { SessionFollower } from './postmortems/session-follower.js';
import { type ApproverCheck, EVERYONE, SlackApprovers } from './slack/approvers.js';
import { slackChat } from './slack/chat.js';
import { IncidentChannelFinder } from './slack/incident-channels.js';
import { registerListeners } from './slack/listeners/index.js';
import { ChannelPacer } from './slack/pacer.js';
import { SqliteStore } from './store/sqlite.js';
import type { Store } from './store/store.js';

export interface BotIdentity {
  botId: string;
  botUserId: string;
}

export interface AppDeps {
  logger: Logger;
  /** Who the bot is in Slack (from auth.test at start-up), so Bolt never calls auth.test itself. */
  botIdentity: BotIdentity;
  store?: Store;
  now?: () => number;
  jobs?: Partial<Omit<JobRunnerOptions, 'store' | 'handlers' | 'logger' | 'now'>>;
  devinTimeoutMs?: number;
  devinGiveUpAfterMs?: number;
  devinReconcileWindowMs?: number;
  /** Minimum time between Slack calls in one channel (default 1 s, Slack's limit for posting). */
  slackChannelIntervalMs?: number;
  /** False in tests that tick the follower themselves. */
  followOnSchedule?: boolean;
}

export interface PostmortemBot {
  express: Express;
  bolt: App;
  store: Store;
  service: PostmortemService;
  approvers: ApproverCheck;
  jobs: JobRunner;
  /** Follows Devin sessions and tends approvals; ticks on SESSION_POLL_CRON once started. */
  follower: SessionFollower;
  /** Listens on `port` (0 for any) and starts the job workers. */
  start(port: number): Promise<Server>;
  /** Graceful: stop intake, finish in-flight requests and jobs, close the store. */
  stop(): Promise<void>;
}

/** The composition root: everything is built here from the validated config and handed down. */
export function createPostmortemBot(config: Config, deps: AppDeps): PostmortemBot {
  const { logger } = deps;
  const now = deps.now ?? Date.now;
  const store = deps.store ?? new SqliteStore({ path: config.database.path, now });
  let accepting = true;

  const expressApp = express();
  expressApp.disable('x-powered-by');
  // Our own routes come first, each with its own body parser; Bolt needs the raw body of /slack/events.
  expressApp.use(healthRouter({ store, accepting: () => accepting }));
  expressApp.use(
    pagerDutyWebhookRouter({
      store,
      logger,
      webhookSecrets: config.pagerduty.webhookSecrets,
      sharedSecret: config.pagerduty.sharedSecret,
      now,
      accepting: () => accepting,
    }),
  );
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
    },
  });
  bolt.error(async (err) => {
    logger.error({ err: err.message, code: (err as { code?: string }).code }, 'Slack listener failed');
  });

  const policy = {
    autoStartPriorities: config.autoStartPriorities,
    earlyStartPriorities: config.lifecycle.earlyStartPriorities,
    neverPriorities: config.evidence.neverPriorities,
    defaultChannel: config.slack.defaultChannel,
    routing: config.routing,
  };
  const approvers =
    config.slack.approvers.length > 0
      ? new SlackApprovers(config.slack.approvers, bolt.client, logger, now)
      : EVERYONE;
  const pagerduty = config.pagerduty.apiToken
    ? new PagerDutyClient({ apiUrl: config.pagerduty.apiUrl, token: config.pagerduty.apiToken })
    : undefined;
  const service = new PostmortemService({
    store,
    policy,
    approvers,
    pagerduty,
    channelFinder: config.evidence.incidentChannelPattern
      ? new IncidentChannelFinder(config.evidence.incidentChannelPattern, bolt.client, logger, now)
      : undefined,
    logger,
    now,
  });
  const devin = new DevinClient({ ...config.devin, timeoutMs: deps.devinTimeoutMs });
  const runJobs = new RunJobs({
    store,
    devin,
    slack: slackChat(bolt.client),
    policy,
    session: config.devin,
    logger,
    now,
    devinGiveUpAfterMs: deps.devinGiveUpAfterMs,
    approvalExpireAfterMs: config.lifecycle.approvalExpireAfterMs,
    devinReconcileWindowMs: deps.devinReconcileWindowMs ?? config.devin.reconcileWindowMs,
    evidence: new EvidenceGatherer({
      pagerduty,
      slackHistory: config.evidence.includeChannelHistory ? bolt.client : undefined,
      logger,
      now,
    }),
    prompt: { template: config.evidence.template, destination: config.evidence.destination },
    pacer: new ChannelPacer(deps.slackChannelIntervalMs ?? 1000, now),
    pagerduty,
    pagerdutyFromEmail: config.evidence.pagerdutyFromEmail,
  });
  registerListeners(bolt, { service, now });

  const follower = new SessionFollower({
    store,
    devin,
    logger,
    now,
    limits: {
      giveUpAfterMs: config.lifecycle.sessionGiveUpAfterMs,
      earlyStartMaxWaitMs: config.lifecycle.earlyStartMaxWaitMs,
    },
    approvalRemindAfterMs: config.lifecycle.approvalRemindAfterMs,
    approvalExpireAfterMs: config.lifecycle.approvalExpireAfterMs,
    writeBack: pagerduty !== undefined && config.evidence.pagerdutyFromEmail !== undefined,
  });
  const followTicker = new CronTicker(config.lifecycle.pollCron, () => follower.tick(), logger);

  const jobs = new JobRunner({
    ...deps.jobs,
    store,
    logger,
    now,
    handlers: {
      process_event: (job) => service.processEvent(String(job.payload.eventId)),
      start_session: (job) => runJobs.startSession(String(job.payload.runId), job),
      sync_message: (job) => runJobs.syncMessage(String(job.payload.runId), job),
      thread_reply: (job) =>
        runJobs.threadReply(String(job.payload.runId), job.payload.reply as ThreadReplyKind, job),
      finalize_session: (job) => runJobs.finalizeSession(String(job.payload.runId)),
      terminate_session: (job) => runJobs.terminateSession(String(job.payload.runId)),
      pagerduty_note: (job) => runJobs.noteOnIncident(String(job.payload.runId)),
    },
  });

  let server: Server | undefined;
  return {
    express: expressApp,
    bolt,
    store,
    service,
    approvers,
    jobs,
    follower,
    start(port) {
      return new Promise((resolve, reject) => {
        const s = expressApp.listen(port, (err?: Error) => {
          if (err) return reject(err);
          jobs.start();
          if (deps.followOnSchedule !== false) followTicker.start();
          resolve(s);
        });
        // Keep-alive sockets from a load balancer must not hold shutdown hostage.
        s.keepAliveTimeout = 5000;
        server = s;
      });
    },
    async stop() {
      accepting = false;
      if (server) {
        const closing = new Promise<void>((resolve) => server?.close(() => resolve()));
        server.closeIdleConnections();
        await closing;
      }
      await followTicker.stop();
      await jobs.stop();
      await store.close();
    },
  };
}

function boltLogger(logger: Logger): BoltLogger {
  const child = logger.child({ component: 'bolt' });
  return {
    debug: (...msg) => child.debug(msg.map(String).join(' ')),
    info: (...msg) => child.info(msg.map(String).join(' ')),
    warn: (...msg) => child.warn(msg.map(String).join(' ')),
    error: (...msg) => child.error(msg.map(String).join(' ')),
    setLevel: () => {},
    getLevel: () => LogLevel.INFO,
    setName: () => {},
  };
}
