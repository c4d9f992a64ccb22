/**
 * One check of a real configuration against the services it names, read-only. Start-up runs some (a
 * rejected key stops the bot); `npm run doctor` runs them all and prints each.
 */
export interface CheckResult {
  /** What was checked, e.g. "Devin API key and organization". */
  check: string;
  /**
   * ok; failed: the service answered and refused (a wrong key, a missing scope, a channel that does not
   * exist): a setting to fix; unreachable: no answer (DNS, refused, TLS, timeout, 5xx): nothing is known.
   */
  status: 'ok' | 'failed' | 'unreachable';
  /** What was found, in one line. */
  detail: string;
  /** The variable to change, when a setting is the cause. */
  variable?: string;
  /** What to do about it. */
  fix?: string;
}

export const ok = (check: string, detail: string): CheckResult => ({ check, status: 'ok', detail });

export const failed = (
  check: string,
  variable: string | undefined,
  detail: string,
  fix: string,
): CheckResult => ({
  check,
  status: 'failed',
  detail,
  ...(variable ? { variable } : {}),
  fix,
});

export const unreachable = (check: string, detail: string, fix: string): CheckResult => ({
  check,
  status: 'unreachable',
  detail,
  fix,
});

/** The result as one line: "DEVIN_API_KEY: Devin refused the key (401): create a new key …". */
export function describeResult(r: CheckResult): string {
  const head = r.variable ? `${r.variable}: ${r.detail}` : r.detail;
  return r.fix ? `${head}: ${r.fix}` : head;
}
