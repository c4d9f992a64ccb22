import { type Logger as BoltLogger, LogLevel } from '@slack/bolt';
import { type DestinationStream, type Logger, pino } from 'pino';

/**
 * Structured logs with secrets redacted wherever they could appear: request headers, tokens and keys in
 * objects we log. Configuration values are never logged whole.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-pagerduty-signature"]',
  'req.headers["x-webhook-secret"]',
  'req.headers["x-slack-signature"]',
  'headers.authorization',
  'headers["x-pagerduty-signature"]',
  'headers["x-webhook-secret"]',
  'headers["x-slack-signature"]',
  'token',
  'apiKey',
  'secret',
  'signingSecret',
  '*.token',
  '*.apiKey',
  '*.secret',
  '*.signingSecret',
  '*.botToken',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'postmortem-bot' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    destination,
  );
}

/** Keys pino writes itself: a Bolt field by one of these names is kept under bolt_<name>. */
const PINO_KEYS = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'service', 'component', 'v']);

/**
 * Bolt's and its Web API client's logs as pino lines: strings become the message, objects stay fields,
 * an Error becomes `err` (message, code, Slack's error), so nothing is flattened into one string.
 */
export function boltLogger(logger: Logger): BoltLogger {
  const child = logger.child({ component: 'bolt' });
  const write =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (...args: unknown[]): void => {
      if (!child.isLevelEnabled(level)) return;
      const fields: Record<string, unknown> = {};
      const words: string[] = [];
      for (const arg of args) {
        if (arg instanceof Error) {
          const e = arg as Error & { code?: unknown; data?: { error?: unknown } };
          fields.err = {
            type: e.name,
            message: e.message,
            ...(e.code !== undefined ? { code: e.code } : {}),
            ...(e.data?.error !== undefined ? { slackError: e.data.error } : {}),
          };
        } else if (arg !== null && typeof arg === 'object' && !Array.isArray(arg)) {
          for (const [k, v] of Object.entries(arg)) fields[PINO_KEYS.has(k) ? `bolt_${k}` : k] = v;
        } else if (Array.isArray(arg)) {
          fields.items = arg;
        } else {
          words.push(String(arg));
        }
      }
      child[level](fields, words.join(' '));
    };
  return {
    debug: write('debug'),
    info: write('info'),
    warn: write('warn'),
    error: write('error'),
    // The level is LOG_LEVEL's; Bolt asks so it can skip building debug output.
    setLevel: () => {},
    getLevel: () => {
      if (child.isLevelEnabled('debug')) return LogLevel.DEBUG;
      if (child.isLevelEnabled('info')) return LogLevel.INFO;
      if (child.isLevelEnabled('warn')) return LogLevel.WARN;
      return LogLevel.ERROR;
    },
    setName: () => {},
  };
}
