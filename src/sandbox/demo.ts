import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type BotLogLine, type BotProcess, startBotProcess, writeEnvFile } from './bot-process.js';
import { DemoChannel } from './channel.js';
import { DevinScript } from './devin-script.js';
import { DemoIncidents } from './incidents.js';
import { type DemoControls, type PageServer, startPageServer } from './page-server.js';
import { CHANNEL, newIncidentId, PEOPLE, SCENARIOS } from './scenarios.js';
import { FakeDevin } from './stand-ins/fake-devin.js';
import { FakePagerDuty } from './stand-ins/fake-pagerduty.js';
import { FakeSlack } from './stand-ins/fake-slack.js';

/**
 * `npm run demo`: the real bot, unchanged, as its own process, configured through a generated `.env`
 * whose every URL points at a local stand-in (Slack Web API, PagerDuty REST, Devin) and whose secrets are
 * random; plus a page that plays Slack's client, PagerDuty's webhooks and Devin's work.
 */

export interface DemoOptions {
  /** The page's port on 127.0.0.1 (0: any free port). */
  port: number;
  /** The built bot entry point (dist/main.js). */
  botEntry: string;
  /** The page's static files. */
  pageDir?: string;
  /** Devin moves on by itself every this many ms (0: only on "Next step"). Default 5 s. */
  autoStepMs?: number;
  /** Lines worth telling the person at the terminal (bot errors, the bot exiting). */
  report?: (line: string) => void;
}

export interface Demo {
  url: string;
  botUrl: string;
  workDir: string;
  envFile: string;
  slack: FakeSlack;
  devin: FakeDevin;
  pagerduty: FakePagerDuty;
  /** Stops the bot (gracefully), the page and the stand-ins, and removes the work folder. */
  stop(): Promise<void>;
}

/**
 * The page's files are not compiled: they stay in src/sandbox/page, found by walking up from wherever this
 * module runs (src/sandbox, dist/sandbox, or a build elsewhere inside the repository).
 */
export function findPageDir(from = import.meta.dirname): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'src', 'sandbox', 'page');
    if (existsSync(join(candidate, 'index.html'))) return candidate;
    if (dirname(dir) === dir) throw new Error(`the demo page (src/sandbox/page) was not found above ${from}`);
  }
}

const secret = (bytes = 24) => randomBytes(bytes).toString('hex');
const LOG_KEEP = 300;

export async function startDemo(options: DemoOptions): Promise<Demo> {
  const report = options.report ?? (() => {});
  const workDir = mkdtempSync(join(tmpdir(), 'postmortem-bot-demo-'));
  const cleanups: (() => Promise<void> | void)[] = [() => rmSync(workDir, { recursive: true, force: true })];
  const cleanup = async () => {
    for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => {});
  };

  try {
    const secrets = {
      slackToken: `xoxb-demo-${secret(12)}`,
      signing: secret(),
      pagerdutyWebhook: secret(),
      pagerdutyApi: secret(16),
      devinKey: `cog_demo_${secret(16)}`,
    };
    const slack = await new FakeSlack(secrets.slackToken, [CHANNEL.id]).start();
    cleanups.push(() => slack.close());
    for (const p of PEOPLE)
      slack.users.set(p.id, { name: p.name.toLowerCase().replace(/\W/g, '.'), real_name: p.name });
    slack.channelNames.set(CHANNEL.name, CHANNEL.id);
    const devin = await new FakeDevin(secrets.devinKey, 'org-demo').start();
    cleanups.push(() => devin.close());
    const pagerduty = await new FakePagerDuty(secrets.pagerdutyApi).start();
    cleanups.push(() => pagerduty.close());

    // Changes are many and quick (a click moves three things): the page gets one snapshot per burst.
    const listeners = new Set<() => void>();
    let pending: NodeJS.Timeout | undefined;
    const changed = () => {
      pending ??= setTimeout(() => {
        pending = undefined;
        for (const l of listeners) l();
      }, 30);
    };
    cleanups.push(() => clearTimeout(pending));

    let bot: BotProcess | undefined;
    const botUrl = () => {
      if (!bot || botState.exitCode !== null) throw new Error('the bot is not running');
      return bot.url;
    };
    const botState: { running: boolean; exitCode: number | null } = { running: false, exitCode: null };
    const log: BotLogLine[] = [];
    const approver = PEOPLE.find((p) => p.approver) ?? (PEOPLE[0] as (typeof PEOPLE)[number]);

    const incidents = new DemoIncidents({
      pagerduty,
      botUrl,
      webhookSecret: secrets.pagerdutyWebhook,
      responder: approver,
      onChange: changed,
    });
    const channel = new DemoChannel({
      slack,
      channelId: CHANNEL.id,
      botUrl,
      signingSecret: secrets.signing,
      onChange: changed,
    });
    const incidentOf = (tags: string[]) =>
      tags.find((t) => t.startsWith('incident:'))?.slice('incident:'.length);
    const script = new DevinScript(
      devin,
      (session) => {
        const id = incidentOf(session.tags);
        return (
          (id ? incidents.resultFor(id) : undefined) ?? {
            summary: `What happened in ${session.title?.replace(/^Postmortem: /, '') ?? 'the incident'}, from the evidence and the description given.`,
            root_cause: 'Found by Devin in the code and the timeline.',
            impact: 'As described in the form, checked against the timeline.',
            action_items: [{ title: 'Follow-ups are listed in the pull request', owner: 'team' }],
          }
        );
      },
      (session) => {
        const id = incidentOf(session.tags);
        return id !== undefined && incidents.isOpen(id);
      },
      changed,
    );
    script.autoStepMs = options.autoStepMs ?? 5000;
    script.start();
    cleanups.push(() => script.stop());

    const settings = {
      SLACK_APPROVERS: approver.id,
      AUTO_START_PRIORITIES: 'P1,P2',
      EARLY_START_PRIORITIES: 'P2',
      NEVER_PRIORITIES: 'P5',
      SESSION_POLL_CRON: '*/2 * * * * *',
    };
    const envFile = writeEnvFile(
      workDir,
      [
        'Generated by `npm run demo` for this run only, and deleted when it stops.',
        'Every URL is a local stand-in on 127.0.0.1 and every secret is random: nothing here reaches',
        'Slack, PagerDuty or Devin, and nothing leaves this machine.',
      ],
      {
        PORT: '0',
        LOG_LEVEL: 'info',
        SLACK_BOT_TOKEN: secrets.slackToken,
        SLACK_SIGNING_SECRET: secrets.signing,
        SLACK_API_URL: slack.apiUrl,
        SLACK_DEFAULT_CHANNEL: CHANNEL.id,
        PAGERDUTY_WEBHOOK_SECRET: secrets.pagerdutyWebhook,
        PAGERDUTY_API_TOKEN: secrets.pagerdutyApi,
        PAGERDUTY_API_URL: pagerduty.url,
        PAGERDUTY_FROM_EMAIL: 'ada@example.com',
        DEVIN_API_KEY: secrets.devinKey,
        DEVIN_ORG_ID: devin.orgId,
        DEVIN_API_URL: devin.url,
        DATABASE_URL: 'sqlite:./postmortem-bot.db',
        ...settings,
      },
    );

    const controls: DemoControls = {
      snapshot: () =>
        JSON.stringify({
          about: {
            channel: CHANNEL,
            people: PEOPLE,
            settings,
            envFile,
            botUrl: bot?.url ?? null,
          },
          bot: botState,
          scenarios: Object.values(SCENARIOS).map((s) => ({
            kind: s.kind,
            label: s.label,
            expect: s.expect,
          })),
          incidents: incidents.list(),
          channel: channel.snapshot(),
          devin: { autoStepMs: script.autoStepMs, sessions: script.views() },
          log,
        }),
      subscribe: (listener) => {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
      fire: (kind) => incidents.fire(kind, newIncidentId),
      resolve: (id) => incidents.resolve(id),
      click: (input) => channel.click(input),
      command: (input) => channel.command(input),
      submit: (input) => channel.submit(input),
      closeModal: (user, viewId) => channel.close(user, viewId),
      step: (id) => script.next(id),
      fail: (id) => script.fail(id),
      setAutoStep: (ms) => {
        script.autoStepMs = ms;
        changed();
      },
    };

    // The page first: a port already in use stops the demo before anything else starts.
    const page: PageServer = await startPageServer({
      port: options.port,
      pageDir: options.pageDir ?? findPageDir(),
      controls,
    }).catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'EADDRINUSE'
        ? new Error(`port ${options.port} is in use: set DEMO_PORT to another port`)
        : err;
    });
    cleanups.push(() => page.close());

    let stopping = false;
    bot = await startBotProcess({
      entry: options.botEntry,
      cwd: workDir,
      logFile: join(workDir, 'bot.log'),
      onLog: (line) => {
        log.push(line);
        if (log.length > LOG_KEEP) log.splice(0, log.length - LOG_KEEP);
        const incidentId = line.fields.incidentId;
        if (typeof incidentId === 'string') incidents.botSaid(incidentId, line.msg);
        if (line.level === 'error' || line.level === 'fatal') report(`bot ${line.level}: ${line.msg}`);
        changed();
      },
    });
    const running = bot;
    botState.running = true;
    cleanups.push(() => running.stop());
    running.exited.then((code) => {
      Object.assign(botState, { running: false, exitCode: code ?? -1 });
      if (!stopping) report(`the bot exited unexpectedly (code ${code}); see ${join(workDir, 'bot.log')}`);
      changed();
    });
    incidents.seed(newIncidentId());
    changed();

    return {
      url: page.url,
      botUrl: running.url,
      workDir,
      envFile,
      slack,
      devin,
      pagerduty,
      stop: async () => {
        stopping = true;
        await cleanup();
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
