import type { Logger } from 'pino';
import { describeResult } from './checks/check.js';
import { checkConfiguredServices } from './checks/services.js';
import type { Config } from './config/config.js';
import { AppError } from './errors.js';

/**
 * Start-up's own checks of the services the configuration names, besides Slack's auth.test: the Devin
 * key (and the PagerDuty token when set). A refused key stops start-up, naming the variable and the fix;
 * a service that cannot be reached only warns (an outage must not keep the bot from taking webhooks: the
 * work waits in the queue).
 */
export async function checkServicesAtStartup(config: Config, logger: Logger): Promise<void> {
  const results = await checkConfiguredServices(config);
  const refused = results.filter((r) => r.status === 'failed');
  for (const r of results.filter((r) => r.status === 'unreachable')) {
    logger.warn({ check: r.check }, `${r.check}: not checked at start-up: ${describeResult(r)}`);
  }
  if (refused.length > 0) {
    throw new AppError('startup_check_failed', refused.map(describeResult).join('; '));
  }
}

/**
 * A failure to open the store or the port as one line with the fix, instead of a stack trace. Undefined
 * when it is none of the known kinds.
 */
export function describeStartupFailure(err: unknown, config: Config): string | undefined {
  const e = err as NodeJS.ErrnoException & { code?: string };
  const code = typeof e?.code === 'string' ? e.code : undefined;
  if (code === 'EADDRINUSE') {
    return `PORT ${config.port} is already in use by another process: stop it, or set PORT to a free port`;
  }
  if (code === 'EACCES' && e.syscall === 'listen') {
    return `PORT ${config.port} needs privileges this user does not have: use a port above 1023 (behind a proxy or a port mapping, e.g. docker run -p 80:3000)`;
  }
  if (config.database.kind === 'sqlite') {
    const path = config.database.path;
    const fileProblem = ['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EEXIST', 'ENOENT', 'ENOSPC', 'EISDIR'];
    if ((code && fileProblem.includes(code)) || code === 'SQLITE_CANTOPEN' || code === 'SQLITE_READONLY') {
      return `DATABASE_URL: cannot write the SQLite database ${path} (${code}: ${e.message}): point DATABASE_URL at a file in a folder this user may write (in Docker, leave DATABASE_URL unset: the image keeps it in its /data volume)`;
    }
    // A full disk shows as either, depending on which write meets it first.
    if (code?.startsWith('SQLITE_FULL') || code?.startsWith('SQLITE_IOERR')) {
      return `DATABASE_URL: the SQLite database ${path} cannot be written (${code}: ${e.message}): free space on its disk (or check the disk for errors); nothing stored is lost, and the bot starts once it can write`;
    }
  }
  return undefined;
}
