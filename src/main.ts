import { createPostmortemBot } from './app.js';
import { ConfigError, configWarnings, loadConfigFromProcess } from './config/config.js';
import { AppError } from './errors.js';
import { createLogger } from './logging.js';
import { describeProxy, routeThroughProxy } from './proxy.js';
import { resolveBotIdentity } from './slack/identity.js';
import { checkServicesAtStartup, describeStartupFailure } from './startup.js';

/** Entry point: configuration, Slack identity, then the server. Every start-up failure says what to fix. */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfigFromProcess>;
  try {
    config = loadConfigFromProcess();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(
        `postmortem-bot cannot start.\n${err.message}\nSee .env.example and the README for each variable.\n`,
      );
      process.exit(1);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  for (const warning of configWarnings(config)) logger.warn(warning);
  // Before the first outgoing call: Slack, Devin and PagerDuty all go through the proxy when one is set.
  if (routeThroughProxy(config.proxy)) logger.info(describeProxy(config.proxy), 'outbound calls use a proxy');
  const stop = (err: unknown): never => {
    logger.fatal(
      { code: (err as AppError).code },
      describeStartupFailure(err, config) ?? (err as Error).message,
    );
    process.exit(1);
  };
  let botIdentity: Awaited<ReturnType<typeof resolveBotIdentity>>;
  try {
    botIdentity = await resolveBotIdentity(config.slack.botToken, config.slack.apiUrl);
    await checkServicesAtStartup(config, logger);
  } catch (err) {
    return stop(err);
  }
  let bot: ReturnType<typeof createPostmortemBot>;
  // The store failed for good (a disk error lost writes it had accepted): exit, so that the supervisor
  // starts the bot again from what is on disk, as after a crash. Requests in flight get their 503 first.
  const storeFailed = () => {
    process.exitCode = 1;
    const force = setTimeout(() => process.exit(1), 5000);
    force.unref();
    void bot.stop({ graceMs: 1000 }).finally(() => process.exit(1));
  };
  try {
    bot = createPostmortemBot(config, { logger, botIdentity, onStoreFailure: storeFailed });
  } catch (err) {
    if (err instanceof AppError || describeStartupFailure(err, config)) return stop(err);
    throw err;
  }
  // A user group the bot cannot read is logged now (and explained to people on first use), not fatal.
  await bot.approvers.check().catch(() => {});
  const server = await bot.start(config.port).catch((err) => {
    if (describeStartupFailure(err, config)) return stop(err);
    throw err;
  });
  bot.startSchedules();
  const address = server.address();
  logger.info(
    { port: typeof address === 'object' && address ? address.port : config.port },
    'postmortem-bot listening',
  );

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: finishing in-flight work');
    // The last resort, well inside a 40 s termination grace: stop() itself gives in-flight work 20 s
    // (SHUTDOWN_GRACE_MS) and then closes the store, handing what still runs to another replica.
    const force = setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, 30_000);
    force.unref();
    bot.stop().then(
      // A store that failed meanwhile set exit code 1: the supervisor restarts the bot from the disk.
      () => process.exit(process.exitCode === 1 ? 1 : 0),
      (err) => {
        logger.error({ err: (err as Error).message }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(
    `postmortem-bot crashed during start-up: ${err instanceof AppError ? err.message : (err as Error).stack}\n`,
  );
  process.exit(1);
});
