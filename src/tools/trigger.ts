import { randomInt, randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { type Config, ConfigError, loadConfigFromProcess } from '../config/config.js';
import { describeNetworkFailure } from '../network-errors.js';
import { signPagerDutyBody, webhookAuth } from '../pagerduty/signature.js';
import type { Incident } from '../postmortems/model.js';
import { decidePostmortem } from '../postmortems/policy.js';
import { incidentEvent } from '../sandbox/stand-ins/pagerduty-webhooks.js';

/**
 * `npm run trigger -- [--url URL] [--priority P3] [--service NAME] [--title TEXT]`: sends a running bot one
 * sample `incident.resolved`, signed as PagerDuty would sign it with this configuration's secret (the v3
 * signature, or the shared X-Webhook-Secret header when that is the scheme), and prints the answer and what
 * the bot will do with it. Each run is a new incident, so it can be repeated.
 */

export interface TriggerOptions {
  url: string;
  priority: string;
  service: string;
  title: string;
}

export class TriggerUsageError extends Error {}

export function parseTriggerArgs(argv: readonly string[], config: Pick<Config, 'port'>): TriggerOptions {
  const options: TriggerOptions = {
    url: `http://127.0.0.1:${config.port}`,
    priority: 'P3',
    service: 'postmortem-bot trigger',
    title: 'Test incident sent by npm run trigger',
  };
  const names = {
    '--url': 'url',
    '--priority': 'priority',
    '--service': 'service',
    '--title': 'title',
  } as const;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const [flag, inline] = arg.includes('=')
      ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
      : [arg, undefined];
    const key = names[flag as keyof typeof names];
    if (!key) throw new TriggerUsageError(`unknown argument ${arg}`);
    const value = inline ?? argv[++i];
    if (value === undefined || value.trim() === '') throw new TriggerUsageError(`${flag} needs a value`);
    options[key] = value;
  }
  if (!URL.canParse(options.url) || !/^https?:$/.test(new URL(options.url).protocol)) {
    throw new TriggerUsageError(`--url: expected the bot's base URL, e.g. http://127.0.0.1:${config.port}`);
  }
  options.url = options.url.replace(/\/+$/, '');
  return options;
}

/** The sample webhook: a resolved incident that started 42 minutes ago, new IDs every time. */
export function sampleWebhook(
  options: TriggerOptions,
  now = Date.now(),
): { body: string; incident: Incident } {
  const id = `QTRIG${randomUUID().replace(/-/g, '').slice(0, 9).toUpperCase()}`;
  const number = randomInt(900_000, 999_999);
  const createdAt = new Date(now - 42 * 60_000).toISOString();
  const resolvedAt = new Date(now).toISOString();
  const serviceId = 'PTRIGGER';
  const envelope = incidentEvent(
    'incident.resolved',
    {
      id,
      number,
      title: options.title,
      status: 'resolved',
      priority: options.priority,
      urgency: 'high',
      service: { id: serviceId, name: options.service },
      createdAt,
      assignee: { id: 'PTRIGUSR', name: 'npm run trigger' },
    },
    { occurredAt: resolvedAt, agent: { id: 'PTRIGUSR', name: 'npm run trigger' } },
  );
  const incident: Incident = {
    id,
    number,
    title: options.title,
    status: 'resolved',
    serviceId,
    serviceName: options.service,
    priority: options.priority,
    urgency: 'high',
    htmlUrl: null,
    createdAt,
    resolvedAt,
    resolvedBy: 'npm run trigger',
    lastEventAt: resolvedAt,
  };
  return { body: JSON.stringify(envelope), incident };
}

/** Headers that authenticate the body under this configuration's scheme. */
export function authHeaders(config: Config, body: string): Record<string, string> {
  const auth = webhookAuth(config.pagerduty.webhookSecrets, config.pagerduty.sharedSecret);
  if (auth.scheme === 'shared_header') return { 'x-webhook-secret': auth.secret };
  const secret = auth.secrets[0];
  if (!secret) throw new TriggerUsageError('PAGERDUTY_WEBHOOK_SECRET or WEBHOOK_SECRET must be set');
  return { 'x-pagerduty-signature': signPagerDutyBody(body, secret) };
}

export async function trigger(
  config: Config,
  options: TriggerOptions,
): Promise<{ status: number; answer: string; incident: Incident }> {
  const { body, incident } = sampleWebhook(options);
  const res = await fetch(`${options.url}/webhooks/pagerduty`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'user-agent': 'PagerDuty-Webhook/V3.0 (npm run trigger)',
      'x-webhook-id': randomUUID(),
      ...authHeaders(config, body),
    },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, answer: await res.text(), incident };
}

/** What the bot will do with the sample, by this configuration's policy. */
export function expectation(config: Config, incident: Incident): string {
  const decision = decidePostmortem(incident, config.policy);
  switch (decision.action) {
    case 'ask':
      return `${incident.priority} asks first: expect an approval message with Approve and Skip in <#${decision.channel}> (${decision.channel}). Skip it unless you want a real Devin session.`;
    case 'auto_start':
      return `${incident.priority} is in AUTO_START_PRIORITIES: a real Devin session starts now, and <#${decision.channel}> (${decision.channel}) is told. Use Stop in Slack if you did not mean to.`;
    case 'never':
      return `${incident.priority} is in NEVER_PRIORITIES: no postmortem and no message.`;
  }
}

async function main(argv: readonly string[]): Promise<number> {
  let config: Config;
  try {
    config = loadConfigFromProcess();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`trigger: the configuration is invalid:\n${err.message}\n`);
    return 1;
  }
  let options: TriggerOptions;
  try {
    options = parseTriggerArgs(argv, config);
  } catch (err) {
    process.stderr.write(
      `trigger: ${(err as Error).message}\nusage: npm run trigger -- [--url URL] [--priority P3] [--service NAME] [--title TEXT]\n`,
    );
    return 1;
  }
  let result: Awaited<ReturnType<typeof trigger>>;
  try {
    result = await trigger(config, options);
  } catch (err) {
    process.stderr.write(
      `trigger: no answer from ${options.url} (${describeNetworkFailure(err, options.url, 10_000).text}): is the bot running there? (--url sets where)\n`,
    );
    return 1;
  }
  const { status, answer, incident } = result;
  process.stdout.write(
    `Sent incident.resolved for ${incident.id} (#${incident.number}, ${incident.priority}, ${incident.serviceName}) to ${options.url}/webhooks/pagerduty\n`,
  );
  process.stdout.write(`${status} ${answer}\n`);
  if (status !== 202) {
    if (status === 401) process.stderr.write('The bot refused the signature: does it run with this .env?\n');
    return 1;
  }
  process.stdout.write(`${expectation(config, incident)}\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
