import { readFileSync } from 'node:fs';
import { validate as validCron } from 'node-cron';
import { z } from 'zod';
import type { CostLimits } from '../postmortems/budget.js';
import type { PostmortemPolicy } from '../postmortems/policy.js';
import { DEFAULT_DESTINATION, type SessionSettings } from '../postmortems/prompt.js';
import { type PromptTemplate, parseTemplate, TemplateError } from '../postmortems/template.js';
import { parseDuration } from './duration.js';
import { parseRoutingFile, type Routing, RoutingFileError } from './routing.js';

/**
 * The one place that reads the environment. Everything else receives the typed Config.
 */

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Empty values in a .env file (`FOO=`) mean "not set". */
const optional = <T extends z.ZodType>(schema: T) =>
  z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : v), schema.optional());

const required = (what: string) =>
  z
    .string({ error: (i) => (i.input === undefined ? `is required: ${what}` : `expected ${what}`) })
    .trim()
    .min(1, `is required: ${what}`);

const commaList = (item: z.ZodString, what: string) =>
  z
    .string()
    .transform((s) =>
      s
        .split(',')
        .map((x) => x.trim())
        .filter((x) => x.length > 0),
    )
    .pipe(z.array(item, { error: `expected ${what}` }));

const httpsOrLocalUrl = (what: string) =>
  z
    .url({ protocol: /^https?$/, error: `expected ${what} (an http(s) URL)` })
    .transform((u) => u.replace(/\/+$/, ''));

/** An outbound proxy: http(s)://[user:password@]host:port. */
const proxyUrl = () =>
  z.url({ protocol: /^https?$/, error: 'expected a proxy URL such as http://proxy.internal:3128' });

const duration = (fallback: string) =>
  optional(
    z.string().transform((s, ctx) => {
      const ms = parseDuration(s);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: 'expected a duration such as 30m, 24h or 7d' });
        return z.NEVER;
      }
      return ms;
    }),
  ).default(parseDuration(fallback) as number);

/** A duration, or 0 (off). */
const durationOrOff = (fallback: string) =>
  optional(
    z.string().transform((s, ctx) => {
      if (/^\s*0+\s*[smhd]?\s*$/.test(s)) return 0;
      const ms = parseDuration(s);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: 'expected a duration such as 10m or 1h, or 0 for off' });
        return z.NEVER;
      }
      return ms;
    }),
  ).default(parseDuration(fallback) as number);

const priorityList = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((s) =>
      s
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean),
    );

const envSchema = z.object({
  PORT: optional(z.coerce.number({ error: 'expected a port number' }).int().min(0).max(65535)).default(3000),
  LOG_LEVEL: optional(z.enum(LOG_LEVELS, { error: `expected one of ${LOG_LEVELS.join(', ')}` })).default(
    'info',
  ),

  SLACK_BOT_TOKEN: required('the bot token (xoxb-…) from the Slack app’s OAuth & Permissions page').refine(
    (s) => s.startsWith('xoxb-'),
    'expected a bot token starting with xoxb-',
  ),
  SLACK_SIGNING_SECRET: required('the signing secret from the Slack app’s Basic Information page'),
  SLACK_API_URL: optional(httpsOrLocalUrl('the Slack Web API base URL, e.g. https://slack.com/api/')),
  SLACK_DEFAULT_CHANNEL: required('a Slack channel ID such as C0123456789').regex(
    /^[CG][A-Z0-9]{4,}$/,
    'expected a Slack channel ID such as C0123456789 (not a #name)',
  ),

  PAGERDUTY_WEBHOOK_SECRET: optional(
    commaList(
      z.string().min(8, 'each secret must be at least 8 characters'),
      'comma-separated signing secrets',
    ).refine((secrets) => secrets.length > 0, {
      error: 'names no secret (only commas and spaces): set the v3 subscription signing secret(s)',
    }),
  ),
  WEBHOOK_SECRET: optional(z.string().min(16, 'expected at least 16 characters')),
  PAGERDUTY_API_TOKEN: optional(z.string().trim().min(1)),
  PAGERDUTY_API_URL: optional(httpsOrLocalUrl('the PagerDuty REST API base URL')).default(
    'https://api.pagerduty.com',
  ),
  SLACK_APPROVERS: optional(
    commaList(
      z.string().regex(/^[UWS][A-Z0-9]{2,}$/, 'expected Slack user IDs (U…/W…) or user-group IDs (S…)'),
      'comma-separated Slack user IDs (U…) and user-group IDs (S…)',
    ).refine((ids) => ids.length > 0, {
      error: 'names nobody: list Slack user IDs (U…) and user-group IDs (S…), or leave it unset',
    }),
  ),

  DEVIN_API_KEY: required('a Devin service-user API key (cog_…)'),
  DEVIN_ORG_ID: required('the Devin organization ID (org-…)'),
  DEVIN_API_URL: optional(httpsOrLocalUrl('the Devin API base URL')).default('https://api.devin.ai'),
  DEVIN_PLAYBOOK_ID: optional(z.string().trim()),
  DEVIN_KNOWLEDGE_IDS: optional(commaList(z.string(), 'comma-separated knowledge note IDs')),
  DEVIN_REPOS: optional(
    commaList(
      z.string().regex(/^[\w.-]+\/[\w.-]+$/, 'expected owner/name'),
      'comma-separated owner/name repos',
    ),
  ),
  DEVIN_RECONCILE_WINDOW: duration('5m'),
  DEVIN_MAX_ACU_LIMIT: optional(
    z.coerce.number({ error: 'expected a positive whole number' }).int().positive(),
  ),
  DEVIN_DAILY_SESSION_LIMIT: optional(
    z.coerce.number({ error: 'expected a whole number of sessions (0 or more)' }).int().min(0),
  ),
  DEVIN_DAILY_ACU_LIMIT: optional(
    z.coerce.number({ error: 'expected a number of ACUs (0 or more)' }).min(0).max(1e9),
  ),
  DEVIN_MAX_CONCURRENT_SESSIONS: optional(
    z.coerce.number({ error: 'expected a whole number of sessions (1 or more)' }).int().min(1).max(100_000),
  ),

  AUTO_START_PRIORITIES: priorityList('P1,P2'),
  EARLY_START_PRIORITIES: priorityList(''),
  EARLY_START_MAX_WAIT: duration('24h'),
  SESSION_POLL_CRON: optional(
    z.string().refine((s) => validCron(s), 'expected a cron expression such as "* * * * *" (every minute)'),
  ).default('* * * * *'),
  SESSION_GIVE_UP_AFTER: duration('48h'),
  APPROVAL_REMIND_AFTER: duration('24h'),
  APPROVAL_EXPIRE_AFTER: duration('7d'),
  STORM_WINDOW: durationOrOff('10m'),
  DATA_RETENTION: duration('90d'),
  DATABASE_URL: optional(
    z
      .string()
      .refine((s) => s.startsWith('sqlite:') || /^postgres(ql)?:\/\//.test(s), {
        error: 'expected sqlite:<path> or postgres://…',
      })
      .refine((s) => !/^sqlite:\s*(:memory:)?\s*$/.test(s), {
        error: 'expected a file path after sqlite: (an in-memory database would lose everything on restart)',
      })
      .refine((s) => !/^postgres/.test(s) || URL.canParse(s), {
        error: 'expected a URL such as postgres://user:password@host:5432/database',
      }),
  ).default('sqlite:./data/postmortem-bot.db'),
  DATABASE_POOL_SIZE: optional(
    z.coerce.number({ error: 'expected a whole number of connections' }).int().min(1).max(1000),
  ).default(10),
  ROUTING_FILE: optional(z.string()),
  NEVER_PRIORITIES: priorityList(''),
  PROMPT_TEMPLATE_FILE: optional(z.string()),
  POSTMORTEM_DESTINATION: optional(z.string().trim().min(1).max(500)).default(DEFAULT_DESTINATION),
  INCIDENT_CHANNEL_PATTERN: optional(
    z
      .string()
      .trim()
      .refine((s) => /\{(number|id)\}/.test(s) && !/\{(?!number\}|id\})[^}]*\}/.test(s), {
        error: 'expected a channel name with {number} and/or {id}, e.g. inc-{number}',
      }),
  ),
  SLACK_DIGEST_AFTER: optional(
    z.coerce
      .number({ error: 'expected a whole number of requests (0 turns the digest off)' })
      .int()
      .min(0)
      .max(1000),
  ).default(5),
  SLACK_INCLUDE_CHANNEL_HISTORY: optional(
    z.enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'expected true or false' }),
  ).transform((v) => v === 'true' || v === '1' || v === 'yes'),
  PAGERDUTY_FROM_EMAIL: optional(z.email({ error: 'expected the email address of a PagerDuty user' })),
  METRICS_TOKEN: optional(z.string().trim().min(16, 'expected at least 16 characters')),
  HTTPS_PROXY: optional(proxyUrl()),
  HTTP_PROXY: optional(proxyUrl()),
  NO_PROXY: optional(z.string().trim()),
});

/** Every variable the bot reads: the contract README and .env.example document. */
export const ENV_VARIABLES = Object.keys(envSchema.shape);

type ParsedEnv = z.infer<typeof envSchema>;

/** SQLite (one process) or Postgres (any number of replicas). */
export type DatabaseConfig =
  | { kind: 'sqlite'; path: string }
  | { kind: 'postgres'; url: string; poolSize: number };

/**
 * Timings that are fixed in production, not settings: how the job queue polls and backs off, how long a
 * Devin call may take. Tests shorten them (test/helpers/harness.ts); nothing else changes them.
 */
export interface Tuning {
  jobs: {
    concurrency: number;
    pollIntervalMs: number;
    leaseMs: number;
    backoffBaseMs: number;
    backoffMaxMs: number;
  };
  /** Generous on purpose: a create that times out is only reconciled by its tag later. */
  devinTimeoutMs: number;
  /** How long Devin may stay unreachable before a run's start is marked failed. */
  devinGiveUpAfterMs: number;
  /** Minimum time between Slack calls in one channel (Slack's limit for posting). */
  slackChannelIntervalMs: number;
  /** Minimum time between two redraws of a channel's approval digest. */
  slackDigestIntervalMs: number;
}

export const PRODUCTION_TUNING: Tuning = {
  jobs: {
    concurrency: 4,
    pollIntervalMs: 1000,
    // Renewed every 10 s while the job runs: a replica that dies has its jobs taken over within ~35 s.
    leaseMs: 30_000,
    backoffBaseMs: 2000,
    // The backoff stops growing at a minute: once Devin or Slack answers again, waiting work goes on
    // within about that (a retry is one cheap call; Retry-After is honoured on top).
    backoffMaxMs: 60_000,
  },
  devinTimeoutMs: 60_000,
  devinGiveUpAfterMs: 24 * 60 * 60_000,
  slackChannelIntervalMs: 1000,
  slackDigestIntervalMs: 3000,
};

export interface Config {
  port: number;
  logLevel: (typeof LOG_LEVELS)[number];
  slack: {
    botToken: string;
    signingSecret: string;
    apiUrl: string | undefined;
    /** People (U…/W…) and user groups (S…) who may start and decide postmortems; empty = everyone. */
    approvers: string[];
    /** More approval requests than this waiting in a channel fold into its digest; 0: never. */
    digestAfter: number;
  };
  pagerduty: {
    /** v3 subscription signing secrets; several during rotation. */
    webhookSecrets: string[];
    /** Shared X-Webhook-Secret header value (the public guide's scheme). */
    sharedSecret: string | undefined;
    /** REST API token for /postmortem <incident> and evidence; optional. */
    apiToken: string | undefined;
    apiUrl: string;
    /** When set, the postmortem PR's link is written back onto the PagerDuty incident as this user. */
    fromEmail: string | undefined;
  };
  devin: {
    apiKey: string;
    orgId: string;
    apiUrl: string;
    /** After a create with an unknown outcome, how long its tag is looked up before creating again. */
    reconcileWindowMs: number;
    /** What every session is created with (a routing entry may replace each). */
    session: SessionSettings;
    /** The daily budget and the concurrency cap (budget.ts); unset: no limit. */
    limits: CostLimits;
  };
  /** Which incidents get which postmortem, and where it reports: every priority rule together. */
  policy: PostmortemPolicy;
  /** Following sessions, reminders and expiry: every duration in milliseconds. */
  lifecycle: {
    earlyStartMaxWaitMs: number;
    pollCron: string;
    sessionGiveUpAfterMs: number;
    approvalRemindAfterMs: number;
    approvalExpireAfterMs: number;
    /** STORM_WINDOW: resolved incidents of one service within it form one group (0: off). */
    stormWindowMs: number;
  };
  /** What evidence goes into the prompt besides PagerDuty's own record. */
  evidence: {
    includeChannelHistory: boolean;
    incidentChannelPattern: string | undefined;
  };
  /** The prompt's wording and where the postmortem goes (a routing entry may replace each). */
  prompt: { template: PromptTemplate | undefined; destination: string };
  database: DatabaseConfig;
  /** When set, GET /metrics needs `Authorization: Bearer <token>`. */
  metricsToken: string | undefined;
  /** Outbound proxies for every call to Slack, Devin and PagerDuty (empty: none). */
  proxy: ProxyConfig;
  /** How long webhook events, dead jobs and runs' evidence are kept (runs themselves are kept). */
  retentionMs: number;
  tuning: Tuning;
}

export interface ProxyConfig {
  httpsProxy: string | undefined;
  httpProxy: string | undefined;
  /** Hosts reached directly: comma-separated names, `.domain` suffixes, `host:port`, or `*`. */
  noProxy: string | undefined;
}

/** Start-up configuration problems, one line per bad variable. */
export class ConfigError extends Error {
  readonly code = 'config_invalid';
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

export type Env = Record<string, string | undefined>;
type ReadFile = (path: string) => string;

/** The environment, validated: every problem with every variable at once, or the typed Config. */
export function loadConfig(env: Env, readFile: ReadFile = (p) => readFileSync(p, 'utf8')): Config {
  const parsed = envSchema.safeParse(withProxyAliases(env));
  const problems = parsed.success
    ? []
    : parsed.error.issues.map((i) => `${String(i.path[0] ?? '(environment)')}: ${i.message}`);
  const e = parsed.data;
  problems.push(...crossCheck(env, e));
  const files = e ? loadFiles(e, readFile, problems) : undefined;
  if (e && files) problems.push(...historyChecks(e, files.routing));
  if (problems.length > 0 || !e || !files) throw new ConfigError(problems);
  return buildConfig(e, files);
}

/**
 * Proxy variables are spelled both ways in the wild (curl reads lower case, most tools either): the upper
 * case one wins when both are set.
 */
function withProxyAliases(env: Env): Env {
  return {
    ...env,
    HTTPS_PROXY: env.HTTPS_PROXY ?? env.https_proxy,
    HTTP_PROXY: env.HTTP_PROXY ?? env.http_proxy,
    NO_PROXY: env.NO_PROXY ?? env.no_proxy,
  };
}

/** Rules between variables, which the schema of each alone cannot say. */
function crossCheck(env: Env, e: ParsedEnv | undefined): string[] {
  const problems: string[] = [];
  const hasHmac =
    (e?.PAGERDUTY_WEBHOOK_SECRET?.length ?? 0) > 0 || (env.PAGERDUTY_WEBHOOK_SECRET ?? '').trim() !== '';
  const hasShared = (env.WEBHOOK_SECRET ?? '').trim() !== '';
  if (!hasHmac && !hasShared) {
    problems.push(
      'PAGERDUTY_WEBHOOK_SECRET: is required (the v3 subscription signing secret), unless WEBHOOK_SECRET is set',
    );
  }
  if (e?.PAGERDUTY_FROM_EMAIL && !e.PAGERDUTY_API_TOKEN) {
    problems.push(
      'PAGERDUTY_FROM_EMAIL: writing the PR link back needs PAGERDUTY_API_TOKEN (with write access) too',
    );
  }
  if (e && e.APPROVAL_REMIND_AFTER >= e.APPROVAL_EXPIRE_AFTER) {
    problems.push(
      'APPROVAL_REMIND_AFTER: must be shorter than APPROVAL_EXPIRE_AFTER, or the reminder never comes',
    );
  }
  return problems;
}

/** Channel history is read only from channels dedicated to incidents: never from the default channel. */
function historyChecks(e: ParsedEnv, routing: Routing): string[] {
  return Object.entries(routing.services)
    .filter(([, r]) => r.includeChannelHistory && r.channel === e.SLACK_DEFAULT_CHANNEL)
    .map(
      ([key]) =>
        `ROUTING_FILE: services.${key}.include_channel_history: its channel is SLACK_DEFAULT_CHANNEL, where unrelated conversations happen; only a channel dedicated to incidents may be read`,
    );
}

/** The files that settings name (routing, template), read and validated; problems are added to `problems`. */
function loadFiles(
  e: ParsedEnv,
  readFile: ReadFile,
  problems: string[],
): { routing: Routing; template: PromptTemplate | undefined } {
  let routing: Routing = { services: {} };
  if (e.ROUTING_FILE) {
    try {
      routing = parseRoutingFile(e.ROUTING_FILE, readFile(e.ROUTING_FILE), readFile);
    } catch (err) {
      problems.push(
        err instanceof RoutingFileError
          ? `ROUTING_FILE: ${err.message}`
          : `ROUTING_FILE: cannot read ${e.ROUTING_FILE} (${(err as Error).message})`,
      );
    }
  }
  let template: PromptTemplate | undefined;
  if (e.PROMPT_TEMPLATE_FILE) {
    try {
      template = parseTemplate(e.PROMPT_TEMPLATE_FILE, readFile(e.PROMPT_TEMPLATE_FILE));
    } catch (err) {
      problems.push(
        err instanceof TemplateError
          ? `PROMPT_TEMPLATE_FILE: ${err.message}`
          : `PROMPT_TEMPLATE_FILE: cannot read ${e.PROMPT_TEMPLATE_FILE} (${(err as Error).message})`,
      );
    }
  }
  return { routing, template };
}

function buildConfig(
  e: ParsedEnv,
  files: { routing: Routing; template: PromptTemplate | undefined },
): Config {
  return {
    port: e.PORT,
    logLevel: e.LOG_LEVEL,
    slack: {
      botToken: e.SLACK_BOT_TOKEN,
      signingSecret: e.SLACK_SIGNING_SECRET,
      // The Web API client joins method names onto this URL, so it must end in a slash.
      apiUrl: e.SLACK_API_URL ? `${e.SLACK_API_URL}/` : undefined,
      approvers: e.SLACK_APPROVERS ?? [],
      digestAfter: e.SLACK_DIGEST_AFTER,
    },
    pagerduty: {
      webhookSecrets: e.PAGERDUTY_WEBHOOK_SECRET ?? [],
      sharedSecret: e.WEBHOOK_SECRET,
      apiToken: e.PAGERDUTY_API_TOKEN,
      apiUrl: e.PAGERDUTY_API_URL,
      fromEmail: e.PAGERDUTY_FROM_EMAIL,
    },
    devin: {
      apiKey: e.DEVIN_API_KEY,
      orgId: e.DEVIN_ORG_ID,
      apiUrl: e.DEVIN_API_URL,
      reconcileWindowMs: e.DEVIN_RECONCILE_WINDOW,
      session: {
        playbookId: e.DEVIN_PLAYBOOK_ID,
        knowledgeIds: e.DEVIN_KNOWLEDGE_IDS ?? [],
        repos: e.DEVIN_REPOS ?? [],
        maxAcuLimit: e.DEVIN_MAX_ACU_LIMIT,
      },
      limits: {
        dailySessions: e.DEVIN_DAILY_SESSION_LIMIT,
        dailyAcus: e.DEVIN_DAILY_ACU_LIMIT,
        maxConcurrent: e.DEVIN_MAX_CONCURRENT_SESSIONS,
      },
    },
    policy: {
      autoStartPriorities: e.AUTO_START_PRIORITIES,
      earlyStartPriorities: e.EARLY_START_PRIORITIES,
      neverPriorities: e.NEVER_PRIORITIES,
      defaultChannel: e.SLACK_DEFAULT_CHANNEL,
      routing: files.routing,
    },
    lifecycle: {
      earlyStartMaxWaitMs: e.EARLY_START_MAX_WAIT,
      pollCron: e.SESSION_POLL_CRON,
      sessionGiveUpAfterMs: e.SESSION_GIVE_UP_AFTER,
      approvalRemindAfterMs: e.APPROVAL_REMIND_AFTER,
      approvalExpireAfterMs: e.APPROVAL_EXPIRE_AFTER,
      stormWindowMs: e.STORM_WINDOW,
    },
    evidence: {
      includeChannelHistory: e.SLACK_INCLUDE_CHANNEL_HISTORY,
      incidentChannelPattern: e.INCIDENT_CHANNEL_PATTERN,
    },
    prompt: { template: files.template, destination: e.POSTMORTEM_DESTINATION },
    database: e.DATABASE_URL.startsWith('sqlite:')
      ? { kind: 'sqlite', path: e.DATABASE_URL.slice('sqlite:'.length) }
      : { kind: 'postgres', url: e.DATABASE_URL, poolSize: e.DATABASE_POOL_SIZE },
    metricsToken: e.METRICS_TOKEN,
    proxy: { httpsProxy: e.HTTPS_PROXY, httpProxy: e.HTTP_PROXY, noProxy: e.NO_PROXY },
    retentionMs: e.DATA_RETENTION,
    tuning: structuredClone(PRODUCTION_TUNING),
  };
}

/** Settings that work but deserve a word in the log at start-up (never secrets). */
export function configWarnings(config: Config): string[] {
  const warnings: string[] = [];
  if (config.slack.approvers.length === 0) {
    warnings.push(
      'SLACK_APPROVERS is not set: everyone in the workspace (except guests and people from outside the organisation) may start and approve Devin sessions, which cost money. Set it to the user IDs or user groups who may.',
    );
  }
  const { webhookSecrets, sharedSecret } = config.pagerduty;
  if (sharedSecret !== undefined && webhookSecrets.length > 0) {
    warnings.push(
      'WEBHOOK_SECRET is ignored: PAGERDUTY_WEBHOOK_SECRET is set, so every webhook needs a valid X-PagerDuty-Signature. Remove WEBHOOK_SECRET (and the X-Webhook-Secret header on the subscription).',
    );
  } else if (sharedSecret !== undefined) {
    warnings.push(
      'WEBHOOK_SECRET: webhooks are checked only by the shared X-Webhook-Secret header, which is weaker than PagerDuty’s signature (the value travels with every request and does not cover the body). Prefer PAGERDUTY_WEBHOOK_SECRET, the subscription’s signing secret.',
    );
  }
  const optedIn = Object.values(config.policy.routing.services).some((r) => r.includeChannelHistory);
  if (config.evidence.includeChannelHistory && !config.evidence.incidentChannelPattern && !optedIn) {
    warnings.push(
      'SLACK_INCLUDE_CHANNEL_HISTORY is on, but no channel is dedicated to incidents, so no history will be read: set INCIDENT_CHANNEL_PATTERN, or "include_channel_history": true on routing entries whose channel is dedicated to incidents.',
    );
  } else if (!config.evidence.includeChannelHistory && optedIn) {
    warnings.push(
      'ROUTING_FILE: include_channel_history has no effect while SLACK_INCLUDE_CHANNEL_HISTORY is off.',
    );
  }
  return warnings;
}

/**
 * The process's configuration: `.env` in the working directory (if present) fills in what the real
 * environment does not set, then the whole environment is validated.
 */
export function loadConfigFromProcess(envFile = '.env'): Config {
  try {
    process.loadEnvFile(envFile);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return loadConfig(process.env);
}
