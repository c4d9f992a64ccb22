import { pathToFileURL } from 'node:url';
import { type CheckResult, describeResult, ok } from '../checks/check.js';
import { checkDatabase } from '../checks/database.js';
import { checkConfiguredServices } from '../checks/services.js';
import { checkSlack } from '../checks/slack.js';
import { type Config, ConfigError, loadConfigFromProcess } from '../config/config.js';
import { routeThroughProxy } from '../proxy.js';

/**
 * `npm run doctor`: read-only checks of the configuration the bot would start with (.env and the
 * environment, through the same loader), against the real Slack, Devin, PagerDuty and database. Each line
 * says what was found and, when it failed, which variable to change and how. Posts nothing anywhere, starts
 * nothing. Exit code 1 when any check failed or could not be made.
 */
export async function runDoctor(config: Config): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const routed = Object.keys(config.policy.routing.services).length;
  results.push(
    ok(
      'Configuration',
      `every variable is valid${routed > 0 ? `; the routing file names ${routed} service${routed === 1 ? '' : 's'}` : ''}${config.prompt.template ? '; the prompt template is valid' : ''}`,
    ),
  );
  results.push(...(await checkSlack(config)));
  results.push(...(await checkConfiguredServices(config, { fromEmail: config.pagerduty.fromEmail })));
  if (!config.pagerduty.apiToken) {
    results.push(
      ok('PagerDuty API token', 'not set: `/postmortem <incident>` and PagerDuty evidence are off'),
    );
  }
  results.push(await checkDatabase(config.database));
  return results;
}

const MARK: Record<CheckResult['status'], string> = { ok: '✓', failed: '✗', unreachable: '?' };

export function formatResults(results: readonly CheckResult[]): string {
  const lines = results.map((r) =>
    r.status === 'ok'
      ? `  ${MARK.ok} ${r.check}: ${r.detail}`
      : `  ${MARK[r.status]} ${r.check}: ${describeResult(r)}`,
  );
  const bad = results.filter((r) => r.status !== 'ok').length;
  return `${lines.join('\n')}\n${results.length} checks, ${bad === 0 ? 'all passed' : `${bad} failed`}\n`;
}

async function main(): Promise<number> {
  let config: Config;
  try {
    config = loadConfigFromProcess();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stdout.write(
      `  ✗ Configuration:\n${err.problems.map((p) => `      ${p}`).join('\n')}\n1 check, 1 failed\n`,
    );
    return 1;
  }
  routeThroughProxy(config.proxy);
  process.stdout.write('postmortem-bot doctor: read-only checks of this configuration (nothing is posted)\n');
  const results = await runDoctor(config);
  process.stdout.write(formatResults(results));
  return results.every((r) => r.status === 'ok') ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`doctor: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
