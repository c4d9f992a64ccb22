import type { types } from '@slack/bolt';
import type { AdHocIncident } from '../postmortems/service.js';

/** The /postmortem modal for an incident that is not in PagerDuty, and the reading of what was submitted. */

export const ADHOC_VIEW_ID = 'postmortem_adhoc';

const SEVERITIES = ['P1', 'P2', 'P3', 'P4', 'P5'];

export function adHocModal(channelId: string): types.View {
  const text = (t: string) => ({ type: 'plain_text' as const, text: t });
  return {
    type: 'modal',
    callback_id: ADHOC_VIEW_ID,
    title: text('Start a postmortem'),
    submit: text('Start'),
    close: text('Cancel'),
    private_metadata: JSON.stringify({ channelId }),
    blocks: [
      {
        type: 'input',
        block_id: 'title',
        label: text('Title'),
        element: { type: 'plain_text_input', action_id: 'value', max_length: 150 },
      },
      {
        type: 'input',
        block_id: 'service',
        label: text('Service'),
        element: { type: 'plain_text_input', action_id: 'value', max_length: 100 },
      },
      {
        type: 'input',
        block_id: 'started_at',
        label: text('Started'),
        element: { type: 'datetimepicker', action_id: 'value' },
      },
      {
        type: 'input',
        block_id: 'ended_at',
        label: text('Ended'),
        element: { type: 'datetimepicker', action_id: 'value' },
      },
      {
        type: 'input',
        block_id: 'severity',
        label: text('Severity'),
        optional: true,
        element: {
          type: 'static_select',
          action_id: 'value',
          options: SEVERITIES.map((s) => ({ text: text(s), value: s })),
        },
      },
      {
        type: 'input',
        block_id: 'summary',
        label: text('What happened'),
        optional: true,
        hint: text(
          'Symptoms, impact, what you already know. Devin treats this as evidence, not instructions.',
        ),
        element: { type: 'plain_text_input', action_id: 'value', multiline: true, max_length: 3000 },
      },
      {
        type: 'input',
        block_id: 'channel',
        label: text('Report in'),
        element: {
          type: 'conversations_select',
          action_id: 'value',
          default_to_current_conversation: true,
          ...(channelId ? { initial_conversation: channelId } : {}),
          filter: { include: ['public', 'private'], exclude_bot_users: true },
        },
      },
    ],
  };
}

interface StateValue {
  type?: string;
  value?: string | null;
  selected_date_time?: number | null;
  selected_option?: { value?: string } | null;
  selected_conversation?: string | null;
}
export type ViewState = Record<string, Record<string, StateValue>>;

export type AdHocParse =
  | { ok: true; incident: Omit<AdHocIncident, 'viewId'> }
  | { ok: false; errors: Record<string, string> };

/**
 * Reads and checks the submitted modal. Problems are returned per block, for Slack to show next to the
 * field (response_action: errors); nothing the person typed is lost.
 */
export function parseAdHocSubmission(values: ViewState, now: number): AdHocParse {
  const get = (block: string) => values[block]?.value;
  const errors: Record<string, string> = {};
  const title = get('title')?.value?.trim() ?? '';
  const service = get('service')?.value?.trim() ?? '';
  const started = get('started_at')?.selected_date_time;
  const ended = get('ended_at')?.selected_date_time;
  const channel = get('channel')?.selected_conversation ?? '';
  const summary = get('summary')?.value?.trim() || null;
  const severity = get('severity')?.selected_option?.value ?? null;

  if (!title) errors.title = 'Give the incident a title.';
  if (!service) errors.service = 'Name the affected service.';
  if (!started) errors.started_at = 'When did it start?';
  if (!ended) errors.ended_at = 'When did it end?';
  const nowS = now / 1000;
  if (started && started > nowS + 300) errors.started_at = 'The start is in the future.';
  if (ended && ended > nowS + 300)
    errors.ended_at = 'The end is in the future: start the postmortem once it is over.';
  if (started && ended && ended <= started) errors.ended_at = 'The end must be after the start.';
  if (!/^[CG][A-Z0-9]+$/.test(channel)) errors.channel = 'Pick a channel to report in.';
  if (severity !== null && !SEVERITIES.includes(severity)) errors.severity = 'Pick a severity from the list.';
  if (Object.keys(errors).length > 0 || !started || !ended) return { ok: false, errors };

  return {
    ok: true,
    incident: {
      title,
      service,
      startedAt: new Date(started * 1000).toISOString(),
      endedAt: new Date(ended * 1000).toISOString(),
      severity,
      summary,
      channel,
    },
  };
}
