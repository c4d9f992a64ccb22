/**
 * What a person may type after /postmortem to name a PagerDuty incident: its ID (Q2K8TBZ1L3KJ7M), its
 * number (4711 or #4711), or its URL (https://acme.pagerduty.com/incidents/Q2K8TBZ1L3KJ7M), possibly as
 * Slack sends links (<https://…> or <https://…|label>). Returns what the REST API takes in the path.
 */
export function parseIncidentRef(text: string): string | undefined {
  let s = text.trim();
  const slackLink = /^<([^|>]+)(\|[^>]*)?>$/.exec(s);
  if (slackLink?.[1]) s = slackLink[1];
  if (/^https?:\/\//i.test(s)) {
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      return undefined;
    }
    const match = /\/incidents\/([A-Za-z0-9]+)\/?$/.exec(url.pathname);
    return match?.[1];
  }
  const number = /^#?(\d{1,12})$/.exec(s);
  if (number?.[1]) return number[1];
  return /^[A-Z0-9]{6,20}$/.test(s) ? s : undefined;
}
