import type { types } from '@slack/bolt';
import type { PostmortemRun } from '../postmortems/model.js';
import { formatDuration, link, mention, plain, untrusted } from './format.js';

/** Action IDs of the approval buttons: part of the contract with existing Slack messages. */
export const APPROVE_ACTION_ID = 'postmortem_approve';
export const SKIP_ACTION_ID = 'postmortem_skip';

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
  const headline = `*${link(incident.htmlUrl, `Incident ${number}resolved`)}:* ${title}`;
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

function statusBlocks(run: PostmortemRun): KnownBlock[] {
  const who = run.decidedBy ? mention(run.decidedBy) : undefined;
  const session = link(run.devinUrl, 'Open the Devin session');
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
            {
              type: 'button',
              action_id: APPROVE_ACTION_ID,
              text: { type: 'plain_text', text: 'Approve' },
              style: 'primary',
              value: run.id,
            },
            {
              type: 'button',
              action_id: SKIP_ACTION_ID,
              text: { type: 'plain_text', text: 'Skip' },
              value: run.id,
            },
          ],
        },
      ];
    case 'skipped':
      return [context(`:fast_forward: Postmortem skipped by ${who ?? 'someone'}.`)];
    case 'starting':
      return [
        context(
          run.trigger === 'auto'
            ? `:hourglass_flowing_sand: Starting a Devin postmortem session automatically (priority ${untrusted(run.incident.priority ?? 'none', 50)})…`
            : `:hourglass_flowing_sand: Approved by ${who ?? 'someone'}. Starting a Devin postmortem session…`,
        ),
      ];
    case 'started':
      return [
        context(
          run.trigger === 'auto'
            ? `:robot_face: Devin postmortem session started automatically (priority ${untrusted(run.incident.priority ?? 'none', 50)}). ${session}`
            : `:white_check_mark: Approved by ${who ?? 'someone'}. Devin postmortem session started. ${session}`,
        ),
      ];
    case 'failed':
      return [
        context(
          `:warning: The Devin session could not be started: ${untrusted(run.error ?? 'unknown error', 1500)}${who ? ` (approved by ${who})` : ''}`,
        ),
      ];
  }
}
