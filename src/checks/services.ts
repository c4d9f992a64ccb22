import type { Config } from '../config/config.js';
import { DevinApiError, DevinClient } from '../devin/client.js';
import { PagerDutyApiError, PagerDutyClient } from '../pagerduty/rest-client.js';
import { type CheckResult, failed, ok, unreachable } from './check.js';

/**
 * The services the configuration names, besides Slack: the Devin key and organization, and the PagerDuty
 * token when one is set (with `fromEmail`, the From address for notes, when asked). Shared by start-up
 * (src/startup.ts) and `npm run doctor`, with the same clients and timeouts.
 */
export async function checkConfiguredServices(
  config: Config,
  options: { fromEmail?: string | undefined } = {},
): Promise<CheckResult[]> {
  const devin = new DevinClient({
    apiUrl: config.devin.apiUrl,
    apiKey: config.devin.apiKey,
    orgId: config.devin.orgId,
    timeoutMs: 10_000,
  });
  const results = [await checkDevin(devin, config.devin.orgId)];
  if (config.pagerduty.apiToken) {
    const pagerduty = new PagerDutyClient({
      apiUrl: config.pagerduty.apiUrl,
      token: config.pagerduty.apiToken,
      timeoutMs: 10_000,
      rateLimitRetries: 2,
    });
    results.push(...(await checkPagerDuty(pagerduty, options.fromEmail)));
  }
  return results;
}

/** A tag no session carries: listing by it proves the key, the organization and the permission to list. */
export const CHECK_TAG = 'pm-configuration-check';

/**
 * The Devin key and organization work, and the service user may list the organization's sessions by tag
 * (the exactly-once create depends on it). Reads only.
 */
export async function checkDevin(client: DevinClient, orgId: string): Promise<CheckResult> {
  const check = 'Devin API key and organization';
  try {
    await client.findSessionByTag(CHECK_TAG);
    return ok(check, `the key lists sessions by tag in ${orgId}`);
  } catch (err) {
    if (!(err instanceof DevinApiError)) throw err;
    if (err.code === 'devin_rejected' && err.status === 401) {
      return failed(
        check,
        'DEVIN_API_KEY',
        `Devin rejected the key (401)`,
        'create a key for the service user (app.devin.ai → Settings → Service users) and set DEVIN_API_KEY to it',
      );
    }
    if (err.code === 'devin_rejected' && err.status === 403) {
      return failed(
        check,
        'DEVIN_API_KEY',
        `Devin refused to list the organization's sessions (403)`,
        'give the service user the ViewOrgSessions permission: the bot looks sessions up by tag so that it never creates one twice',
      );
    }
    if (err.code === 'devin_rejected' && err.status === 404) {
      return failed(
        check,
        'DEVIN_ORG_ID',
        `Devin does not know the organization ${orgId} (404)`,
        'copy the organization ID (org-…) from app.devin.ai → Settings; dedicated deployments also set DEVIN_API_URL',
      );
    }
    if (err.code === 'devin_rejected' || err.code === 'devin_bad_response') {
      return failed(
        check,
        'DEVIN_API_URL',
        err.message,
        'check DEVIN_API_URL points at the Devin API (default https://api.devin.ai)',
      );
    }
    return unreachable(
      check,
      err.message,
      'check the network path to Devin (DNS, firewall, HTTPS_PROXY); the bot retries Devin calls until it answers',
    );
  }
}

/**
 * The PagerDuty REST token reads incidents; with PAGERDUTY_FROM_EMAIL, that email is a PagerDuty user
 * (notes are written as them) and the token may write notes (asked with a note to an incident that cannot
 * exist: nothing is written).
 */
export async function checkPagerDuty(
  client: PagerDutyClient,
  fromEmail: string | undefined,
): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const check = 'PagerDuty API token';
  try {
    await client.listIncidents(1);
    results.push(ok(check, 'the token reads incidents'));
  } catch (err) {
    results.push(pagerDutyFailure(check, err));
    return results;
  }
  if (fromEmail) {
    const who = 'PagerDuty note author (PAGERDUTY_FROM_EMAIL)';
    try {
      const found = await client.findUserByEmail(fromEmail);
      if (found && !(await client.mayWriteNotes(fromEmail))) {
        results.push(
          failed(
            who,
            'PAGERDUTY_API_TOKEN',
            'the token is read-only: PagerDuty refuses it notes (403), so the PR link cannot be written back',
            'create an API key without "Read-only" and set PAGERDUTY_API_TOKEN to it, or unset PAGERDUTY_FROM_EMAIL',
          ),
        );
        return results;
      }
      results.push(
        found
          ? ok(who, `${fromEmail} is the PagerDuty user ${found}, and the token may write notes`)
          : failed(
              who,
              'PAGERDUTY_FROM_EMAIL',
              `no PagerDuty user has the email ${fromEmail}`,
              'set it to the email of a PagerDuty user (PagerDuty refuses notes from anyone else)',
            ),
      );
    } catch (err) {
      results.push(pagerDutyFailure(who, err));
    }
  }
  return results;
}

function pagerDutyFailure(check: string, err: unknown): CheckResult {
  if (err instanceof PagerDutyApiError && err.code === 'pagerduty_forbidden') {
    return failed(
      check,
      'PAGERDUTY_API_TOKEN',
      `PagerDuty refused the token (${err.status})`,
      'create a REST API key (PagerDuty → Integrations → API Access Keys; read-only is enough without PAGERDUTY_FROM_EMAIL) and set PAGERDUTY_API_TOKEN, or unset it',
    );
  }
  if (err instanceof PagerDutyApiError && err.code === 'pagerduty_not_found') {
    return failed(
      check,
      'PAGERDUTY_API_URL',
      'PagerDuty answered 404 for its incidents list',
      'check PAGERDUTY_API_URL (https://api.pagerduty.com, or https://api.eu.pagerduty.com for EU accounts)',
    );
  }
  const message = err instanceof Error ? err.message : String(err);
  return unreachable(check, message, 'check the network path to PagerDuty (DNS, firewall, HTTPS_PROXY)');
}
