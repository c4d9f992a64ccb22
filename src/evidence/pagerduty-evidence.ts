import { errorMessage } from '../errors.js';
import type { PagerDutyClient } from '../pagerduty/rest-client.js';
import type { TimelineEntry } from './timeline.js';

export interface GatheredEvidence {
  entries: TimelineEntry[];
  /** What could not be gathered, in words for the prompt. */
  missing: string[];
}

const LOG_ENTRY_KINDS: Record<string, string> = {
  trigger_log_entry: 'trigger',
  acknowledge_log_entry: 'acknowledge',
  unacknowledge_log_entry: 'unacknowledge',
  escalate_log_entry: 'escalate',
  assign_log_entry: 'assign',
  annotate_log_entry: 'note',
  resolve_log_entry: 'resolve',
  reopen_log_entry: 'reopen',
  notify_log_entry: 'notify',
  priority_change_log_entry: 'priority',
  urgency_change_log_entry: 'urgency',
  snooze_log_entry: 'snooze',
  link_log_entry: 'link',
  status_update_log_entry: 'status update',
  responder_request_log_entry: 'responder request',
};

/**
 * The incident's log entries, notes, alerts and related changes from PagerDuty's REST API. Each source
 * fails on its own: what it could not fetch is named in `missing`, and the postmortem goes on without it.
 */
export async function gatherPagerDutyEvidence(
  client: PagerDutyClient,
  incidentId: string,
): Promise<GatheredEvidence> {
  const attempt = async (what: string, load: () => Promise<TimelineEntry[]>): Promise<GatheredEvidence> => {
    try {
      return { entries: await load(), missing: [] };
    } catch (err) {
      return { entries: [], missing: [`PagerDuty ${what} could not be fetched (${errorMessage(err)})`] };
    }
  };
  // Fetched at once, combined in a fixed order so equal times always sort the same way.
  const parts = await Promise.all([
    attempt('log entries', async () =>
      (await client.logEntries(incidentId)).map((e) => {
        const kind = LOG_ENTRY_KINDS[e.type] ?? e.type.replace(/_log_entry$/, '').replace(/_/g, ' ');
        const who = e.agent?.summary;
        const agent = who && !(e.summary ?? '').includes(who) ? ` (by ${who})` : '';
        return { at: e.created_at, source: `PagerDuty ${kind}`, text: `${e.summary ?? kind}${agent}` };
      }),
    ),
    attempt('notes', async () =>
      (await client.notes(incidentId)).map((n) => ({
        at: n.created_at,
        source: 'PagerDuty note',
        text: `${n.user?.summary ?? 'someone'}: ${n.content}`,
      })),
    ),
    attempt('alerts', async () =>
      (await client.alerts(incidentId)).map((a) => ({
        at: a.created_at,
        source: 'PagerDuty alert',
        text: `[${a.severity ?? 'unknown severity'}] ${a.summary ?? '(no summary)'}${a.status ? ` (${a.status})` : ''}`,
      })),
    ),
    attempt('related change events', async () =>
      (await client.relatedChangeEvents(incidentId)).flatMap((c) =>
        c.timestamp
          ? [
              {
                at: c.timestamp,
                source: 'PagerDuty change',
                text: `${c.summary ?? '(no summary)'}${c.source ? ` (${c.source})` : ''}`,
              },
            ]
          : [],
      ),
    ),
  ]);
  return { entries: parts.flatMap((p) => p.entries), missing: parts.flatMap((p) => p.missing) };
}
