import { mkdtempSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { App } from '@slack/bolt';
import { createPostmortemBot, type PostmortemBot } from '../../src/app.js';
import { type Config, type Env, loadConfig } from '../../src/config/config.js';
import { createLogger } from '../../src/logging.js';
import { postPagerDutyWebhook } from '../../src/sandbox/stand-ins/pagerduty-webhooks.js';
import {
  blockActionsPayload,
  interactionForm,
  postSignedSlackForm,
  slashCommandForm,
  viewSubmissionPayload,
} from '../../src/sandbox/stand-ins/slack-requests.js';
import { FakeDevin } from './fake-devin.js';
import { FakePagerDuty } from './fake-pagerduty.js';
import { FakeSlack } from './fake-slack.js';

export const PD_SECRET = 'pd-subscription-secret-one';
export const SLACK_SIGNING_SECRET = 'slack-signing-secret-for-tests';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');

export function fixture<T = any>(path: string): T {
  return JSON.parse(readFileSync(join(FIXTURES, path), 'utf8')) as T;
}

/** A resolved-incident webhook based on the fixture, with the fields a test cares about changed. */
export function resolvedEvent(overrides: {
  eventId?: string;
  incidentId?: string;
  number?: number;
  priority?: string | null;
  title?: string;
  serviceId?: string;
  serviceName?: string;
  occurredAt?: string;
}): any {
  const body = fixture('pagerduty/incident-resolved.json');
  const e = body.event;
  if (overrides.eventId) e.id = overrides.eventId;
  if (overrides.incidentId) {
    e.data.id = overrides.incidentId;
    e.data.html_url = `https://acme.pagerduty.com/incidents/${overrides.incidentId}`;
  }
  if (overrides.priority !== undefined) {
    e.data.priority =
      overrides.priority === null ? null : { ...e.data.priority, summary: overrides.priority };
  }
  if (overrides.number !== undefined) e.data.number = overrides.number;
  if (overrides.title !== undefined) e.data.title = overrides.title;
  if (overrides.serviceId) e.data.service.id = overrides.serviceId;
  if (overrides.serviceName) e.data.service.summary = overrides.serviceName;
  if (overrides.occurredAt) e.occurred_at = overrides.occurredAt;
  return body;
}

export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    cb();
  }
  get text(): string {
    return this.lines.join('\n');
  }
}

export interface Harness {
  url: string;
  bot: PostmortemBot;
  slack: FakeSlack;
  devin: FakeDevin;
  pagerduty: FakePagerDuty;
  logs: LogCapture;
  clock: TestClock;
  dbPath: string;
  env: Env;
  /**
   * Resolves once the bot has nothing left to do: no Slack listener still running (Bolt acks before its
   * listener finishes), and the job runner settled with no job due within the next two seconds by the bot's
   * clock (retries and Slack calls paced in this harness are due that soon, so they are waited for and run;
   * a job due later is left alone). Wait on this, not on a sleep, before asserting that nothing else happened.
   */
  settled(timeoutMs?: number): Promise<void>;
  /** Stops the bot (gracefully) and starts a new one on the same database and fakes. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  env?: Env;
  /** Changes to the configuration after testConfig's (a shorter Devin timeout, say). */
  configure?: (config: Config) => void;
  /** Tick the follower on SESSION_POLL_CRON, as in production (by default tests tick it themselves). */
  followOnSchedule?: boolean;
}

/**
 * The configuration tests run with: the environment as loaded in production, with the fixed timings
 * shortened so that retries and polls take milliseconds instead of seconds.
 */
export function testConfig(env: Env, configure?: (config: Config) => void): Config {
  const config = loadConfig(env);
  config.tuning = {
    jobs: { ...config.tuning.jobs, pollIntervalMs: 50, backoffBaseMs: 20, backoffMaxMs: 200 },
    devinTimeoutMs: 2000,
    devinGiveUpAfterMs: config.tuning.devinGiveUpAfterMs,
    slackChannelIntervalMs: 100,
    slackDigestIntervalMs: 200,
  };
  if (env.DEVIN_RECONCILE_WINDOW === undefined) config.devin.reconcileWindowMs = 150;
  configure?.(config);
  return config;
}

/** Counts the Slack requests whose listeners are still running, by a Bolt middleware around all of them. */
class SlackListenerWork {
  running = 0;
  finished = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(bolt: App) {
    bolt.use(async ({ next }) => {
      this.running++;
      try {
        await next();
      } finally {
        this.running--;
        this.finished++;
        if (this.running === 0) for (const w of this.idleWaiters.splice(0)) w();
      }
    });
  }

  idle(): Promise<void> {
    return this.running === 0 ? Promise.resolve() : new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}

/** Jobs due this soon (by the bot's clock) are work still to come: retries and paced Slack calls here. */
const SOON_MS = 2000;

async function settle(
  bot: PostmortemBot,
  slackWork: SlackListenerWork,
  clock: TestClock,
  gaveUp: () => boolean,
): Promise<void> {
  while (!gaveUp()) {
    await slackWork.idle();
    const finished = slackWork.finished;
    // The runner looks for work after this moment: a job still queued that was due by then is blocked
    // behind an earlier one of its lane; one due after it may have come due while the runner looked.
    const looked = clock.now();
    await bot.jobs.settled();
    // A listener that ran meanwhile may have queued jobs: look again.
    if (slackWork.running > 0 || slackWork.finished !== finished) continue;
    const later = (await bot.store.listJobs({ state: 'queued', limit: 1000 }))
      .map((j) => j.runAt)
      .filter((at) => at > looked);
    const next = Math.min(...later);
    if (next > looked + SOON_MS) return;
    // Not a guess: the time the next job is due, after which the runner takes it.
    await sleep(Math.max(1, next - clock.now()));
  }
}

/** The bot's clock in tests: real time plus an offset a test can move forward. */
export class TestClock {
  offsetMs = 0;
  readonly now = () => Date.now() + this.offsetMs;
  advance(ms: number): void {
    this.offsetMs += ms;
  }
}

export function testEnv(
  slack: FakeSlack,
  devin: FakeDevin,
  dbPath: string,
  extra: Env = {},
  pagerduty?: FakePagerDuty,
): Env {
  return {
    ...(pagerduty ? { PAGERDUTY_API_TOKEN: pagerduty.token, PAGERDUTY_API_URL: pagerduty.url } : {}),
    SLACK_BOT_TOKEN: slack.token,
    SLACK_SIGNING_SECRET,
    SLACK_API_URL: slack.apiUrl,
    SLACK_DEFAULT_CHANNEL: 'CDEFAULT01',
    PAGERDUTY_WEBHOOK_SECRET: PD_SECRET,
    DEVIN_API_KEY: devin.apiKey,
    DEVIN_ORG_ID: devin.orgId,
    DEVIN_API_URL: devin.url,
    DATABASE_URL: `sqlite:${dbPath}`,
    LOG_LEVEL: 'debug',
    // The fixtures' events happened in 2024: kept for a century, they are not replays in these tests.
    DATA_RETENTION: '36500d',
    // Incidents of the fixture's one service resolve together in most tests: grouping them into storms
    // (STORM_WINDOW) is tested on its own (test/flows/storm.test.ts), the other tests see one run each.
    STORM_WINDOW: '0',
    ...extra,
  };
}

/** The real bot over HTTP, with stand-in Slack and Devin servers, on a fresh SQLite file. */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const slack = await new FakeSlack().start();
  const devin = await new FakeDevin().start();
  const pagerduty = await new FakePagerDuty().start();
  const dbPath = join(mkdtempSync(join(tmpdir(), 'pmbot-')), 'bot.db');
  const env = testEnv(slack, devin, dbPath, options.env, pagerduty);
  const logs = new LogCapture();
  const clock = new TestClock();

  const boot = async () => {
    const bot = createPostmortemBot(testConfig(env, options.configure), {
      logger: createLogger('debug', logs),
      botIdentity: { botId: 'BBOT0001', botUserId: 'UBOT0001', teamId: 'T0001', enterpriseId: undefined },
      now: clock.now,
    });
    const slackWork = new SlackListenerWork(bot.bolt);
    const server = await bot.start(0);
    if (options.followOnSchedule) bot.startSchedules();
    return { bot, slackWork, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
  };

  let current = await boot();
  const harness: Harness = {
    get url() {
      return current.url;
    },
    get bot() {
      return current.bot;
    },
    slack,
    devin,
    pagerduty,
    logs,
    clock,
    dbPath,
    env,
    async settled(timeoutMs = 10_000) {
      const { bot, slackWork } = current;
      let timer: NodeJS.Timeout | undefined;
      let gaveUp = false;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(async () => {
          gaveUp = true;
          const jobs = await bot.store.listJobs({ limit: 20 }).catch(() => []);
          reject(
            new Error(
              `timed out waiting for the bot to settle (${slackWork.running} Slack listener(s) running; jobs: ${JSON.stringify(jobs)})`,
            ),
          );
        }, timeoutMs);
      });
      try {
        await Promise.race([settle(bot, slackWork, clock, () => gaveUp), timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    async restart() {
      await current.bot.stop();
      current = await boot();
    },
    async close() {
      await current.bot.stop().catch(() => {});
      await slack.close();
      await devin.close();
      await pagerduty.close();
    },
  };
  return harness;
}

export async function postPagerDuty(
  url: string,
  body: unknown,
  options: { secret?: string; signature?: string; headers?: Record<string, string> } = {},
): Promise<Response> {
  const raw = typeof body === 'string' ? body : JSON.stringify(body);
  return postPagerDutyWebhook(url, raw, { ...options, secret: options.secret ?? PD_SECRET });
}

export { slackSignature } from '../../src/sandbox/stand-ins/slack-requests.js';

function postSlackForm(url: string, body: string, timestamp = Math.floor(Date.now() / 1000)) {
  return postSignedSlackForm(url, SLACK_SIGNING_SECRET, body, timestamp);
}

/** A signed interactivity request, as Slack sends a button click. */
export async function postSlackInteraction(
  url: string,
  payload: unknown,
  timestamp = Math.floor(Date.now() / 1000),
) {
  return postSlackForm(url, interactionForm(payload), timestamp);
}

/** A signed slash command, as Slack sends `/postmortem <text>`. */
export async function postSlashCommand(
  h: { url: string; slack: FakeSlack },
  text: string,
  options: { userId?: string; channelId?: string } = {},
) {
  const userId = options.userId ?? 'UALICE01';
  return postSlackForm(
    h.url,
    slashCommandForm({
      text,
      userId,
      channelId: options.channelId ?? 'CDEFAULT01',
      responseUrl: `${h.slack.url}/response/cmd-${userId}-${Date.now()}`,
    }),
  );
}

/** A signed view_submission of the modal `view` (as opened), with the given input state. */
export async function postViewSubmission(
  url: string,
  view: { id: string; view: Record<string, unknown> },
  values: Record<string, Record<string, unknown>>,
  userId = 'UALICE01',
) {
  return postSlackForm(url, interactionForm(viewSubmissionPayload(view, values, userId)));
}

/** The block_actions payload Slack sends when `userId` clicks the button `actionId` on the bot's message. */
export function buttonClick(
  slack: FakeSlack,
  message: { channel: string; ts: string; blocks: unknown[] },
  actionId: string,
  userId: string,
): unknown {
  return blockActionsPayload({
    message,
    actionId,
    userId,
    responseUrl: `${slack.url}/response/${userId}-${message.ts}`,
  });
}

export async function waitFor<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The status lines (context blocks) of a message the bot posted, as one text. */
export function contextText(message: { blocks: unknown[] }): string {
  return (message.blocks as any[])
    .filter((b) => b.type === 'context')
    .flatMap((b) => b.elements.map((e: any) => e.text))
    .join('\n');
}
