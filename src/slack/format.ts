/**
 * Untrusted text (incident titles, service names, people's names from PagerDuty) on its way into Slack
 * mrkdwn. Escaping `& < >` turns `<!channel>`, `<@U…>` and `<https://evil|x>` into inert text; the caller
 * also sets `verbatim: true` so Slack does not link or mention anything on its own.
 */
export function escapeMrkdwn(text: string): string {
  return text.toWellFormed().replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Cuts already-escaped text to at most `max` UTF-16 units (Slack counts characters of the JSON string),
 * never inside an entity such as `&amp;` or a surrogate pair, ending with an ellipsis when cut.
 */
export function truncateEscaped(text: string, max: number): string {
  if (text.length <= max) return text;
  let cut = max - 1;
  const lastAmp = text.lastIndexOf('&', cut);
  if (lastAmp >= 0 && lastAmp > cut - 5 && text.indexOf(';', lastAmp) >= cut) cut = lastAmp;
  const code = text.charCodeAt(cut - 1);
  if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
  return `${text.slice(0, cut)}…`;
}

/** Escaped and cut to fit: the one way untrusted text enters a message. */
export function untrusted(text: string, max: number): string {
  return truncateEscaped(escapeMrkdwn(text), max);
}

/**
 * A link only for a real https URL without characters that could break out of `<url|label>`, and short
 * enough that it cannot push a block past Slack's limits.
 */
export function link(url: string | null | undefined, label: string): string {
  if (!url || url.length > 1000) return label;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return label;
  }
  if (parsed.protocol !== 'https:' || /[<>|\s]/.test(url)) return label;
  return `<${url.replace(/&/g, '&amp;')}|${label}>`;
}

/**
 * As many of `items` (already escaped or built as links) as fit in `maxChars` together, at most `maxItems`,
 * then `more(n)` for the n left out: a list that came from outside (pull requests, say) can be of any
 * length, a Block Kit text cannot.
 */
export function cappedList(
  items: readonly string[],
  options: { maxItems: number; maxChars: number; separator: string; more: (left: number) => string },
): string {
  const { maxItems, maxChars, separator, more } = options;
  const whole = items.join(separator);
  if (items.length <= maxItems && whole.length <= maxChars) return whole;
  // Not all fit, so "…and N more" follows: keep room for it (N never exceeds items.length).
  const reserve = separator.length + more(items.length).length;
  const shown: string[] = [];
  let length = 0;
  for (const item of items) {
    const next = length + (shown.length > 0 ? separator.length : 0) + item.length;
    if (shown.length === maxItems || next + reserve > maxChars) break;
    shown.push(item);
    length = next;
  }
  return [...shown, more(items.length - shown.length)].join(separator);
}

export function mention(userId: string): string {
  return /^[UW][A-Z0-9]+$/.test(userId) ? `<@${userId}>` : escapeMrkdwn(userId);
}

export function formatDuration(fromIso: string | null, toIso: string | null): string {
  if (!fromIso || !toIso) return 'unknown';
  const ms = Date.parse(toIso) - Date.parse(fromIso);
  if (!Number.isFinite(ms) || ms < 0) return 'unknown';
  const minutes = Math.round(ms / 60_000);
  if (minutes < 1) return 'under a minute';
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const mins = minutes % 60;
  return [days ? `${days}d` : '', hours ? `${hours}h` : '', mins ? `${mins}m` : ''].filter(Boolean).join(' ');
}
