import type { types } from '@slack/bolt';
import type { PostmortemRun } from '../postmortems/model.js';
import { formatDuration, link, mention, plain, untrusted } from './format.js';

/** Action IDs of the buttons: part of the contract with messages already posted in Slack. */
export const APPROVE_ACTION_ID = 'postmortem_approve';
export const SKIP_ACTION_ID = 'postmortem_skip';
export const START_ANYWAY_ACTION_ID = 'postmortem_start_anyway';
export const RETRY_ACTION_ID = 'postmortem_retry';
export const RUN_AGAIN_ACTION_ID = 'postmortem_run_again';

type KnownBlock = types.KnownBlock;

export interface SlackMessage {
  text: string;
  blocks: KnownBlock[];
}

/**
 * The one Slack message a run owns, rendered from the run's current state. Posting and every later
 * chat.update go through here, so the message always tells the run's story as stored.
 */
export function renderRunMessage(run: PostmortemRun): SlackMessage {
  const incident = run.incident;
  const number = incident.number !== null ? `#${incident.number} ` : '';
  const title = untrusted(incident.title, 500);
  const label = incident.number !== null ? `Incident ${number}resolved` : 'Incident';
  const headline = `*${link(incident.htmlUrl, label)}:* ${title}`;
  const fields = [
    field('Service', untrusted(incident.serviceName, 300)),
    field('Priority', incident.priority ? untrusted(incident.priority, 100) : 'none'),
    field('Urgency', incident.urgency ? untrusted(incident.urgency, 50) : 'unknown'),
    field('Duration', formatDuration(incident.createdAt, incident.resolvedAt)),
    field('Resolved by', incident.resolvedBy ? untrusted(incident.resolvedBy, 300) : 'unknown'),
  ];
  const blocks: KnownBlock[] = [
    { type: 'section', text: { type: 'mrkdwn', text: headline, verbatim: true } },
    { type: 'section', fields },
    ...statusBlocks(run),
  ];
  return { text: plain(`${notificationText(run)}: ${number}${incident.title}`, 3000), blocks };
}

function field(name: string, value: string) {
  return { type: 'mrkdwn' as const, text: `*${name}*\n${value}`, verbatim: true };
}

function notificationText(run: PostmortemRun): string {
  switch (run.state) {
    case 'awaiting_approval':
      return 'Postmortem needs approval';
    case 'skipped':
      return 'Postmortem skipped';
    case 'starting':
      return 'Postmortem starting';
    case 'started':
      return 'Postmortem started';
    case 'failed':
      return 'Postmortem could not start';
  }
}

function context(text: string): KnownBlock {
  return { type: 'context', elements: [{ type: 'mrkdwn', text, verbatim: true }] };
}

function button(actionId: string, text: string, value: string, style?: 'primary' | 'danger') {
  return {
    type: 'button' as const,
    action_id: actionId,
    text: { type: 'plain_text' as const, text },
    value,
    ...(style ? { style } : {}),
  };
}

/** Who set the run going, in words: by priority, by approval, or by asking. */
function origin(run: PostmortemRun): string {
  const who = run.decidedBy ? mention(run.decidedBy) : 'someone';
  if (run.trigger === 'auto')
    return `Started automatically (priority ${untrusted(run.incident.priority ?? 'none', 50)}).`;
  if (run.trigger === 'manual') return `${who} asked for a postmortem.`;
  return `Approved by ${who}.`;
}

function statusBlocks(run: PostmortemRun): KnownBlock[] {
  const who = run.decidedBy ? mention(run.decidedBy) : 'someone';
  switch (run.state) {
    case 'awaiting_approval':
      return [
        {
          type: 'section',
          text: {
            type: 'mrkdwn',
            text: 'Should Devin investigate this incident and write its postmortem?',
            verbatim: true,
          },
        },
        {
          type: 'actions',
          block_id: 'postmortem_decision',
          elements: [
            button(APPROVE_ACTION_ID, 'Approve', run.id, 'primary'),
            button(SKIP_ACTION_ID, 'Skip', run.id),
          ],
        },
      ];
    case 'skipped':
      return [
        context(`:fast_forward: Postmortem skipped by ${who}.`),
        {
          type: 'actions',
          block_id: 'postmortem_skipped',
          elements: [button(START_ANYWAY_ACTION_ID, 'Start anyway', run.id)],
        },
      ];
    case 'starting':
      return [context(`:hourglass_flowing_sand: ${origin(run)} Starting a Devin postmortem session…`)];
    case 'started':
      return [
        context(
          `:white_check_mark: ${origin(run)} Devin postmortem session started: ${link(run.devinUrl, 'open the session')}`,
        ),
      ];
    case 'failed':
      return [
        context(
          `:warning: ${origin(run)} The Devin session could not be started: ${untrusted(run.error ?? 'unknown error', 1500)}`,
        ),
        {
          type: 'actions',
          block_id: 'postmortem_failed',
          elements: [button(RETRY_ACTION_ID, 'Retry', run.id, 'primary')],
        },
      ];
  }
}
