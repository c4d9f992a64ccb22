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
