import type { types } from '@slack/bolt';
import { formatDurationSetting } from '../config/duration.js';
import type { BudgetUsage } from '../postmortems/budget.js';
import type { PostmortemResult, PostmortemRun, StormMember, ThreadReplyKind } from '../postmortems/model.js';
import { budgetHoldText, budgetLeftText, overrideText, waitingText } from './budget-text.js';
import { cappedList, formatDuration, link, mention, untrusted } from './format.js';

/** Action IDs of the buttons: part of the contract with messages already posted in Slack. */
export const APPROVE_ACTION_ID = 'postmortem_approve';
export const SKIP_ACTION_ID = 'postmortem_skip';
export const START_ANYWAY_ACTION_ID = 'postmortem_start_anyway';
export const RETRY_ACTION_ID = 'postmortem_retry';
export const RUN_AGAIN_ACTION_ID = 'postmortem_run_again';
export const STOP_ACTION_ID = 'postmortem_stop';

type KnownBlock = types.KnownBlock;

export interface SlackMessage {
  text: string;
  blocks: KnownBlock[];
}

/**
 * The one Slack message a run owns, rendered from the run's current state. Posting and every later
 * chat.update go through here, so the message always tells the run's story as stored.
 */
export function renderRunMessage(
  run: PostmortemRun,
  storm?: readonly StormMember[],
  usage?: BudgetUsage,
): SlackMessage {
  if (storm && storm.length > 1) return renderStormMessage(run, storm, usage);
  const incident = run.incident;
  const number = incident.number !== null ? `#${incident.number} ` : '';
  const title = untrusted(incident.title, 500);
  const label =
    incident.number !== null
      ? `Incident ${number}${incident.resolvedAt ? 'resolved' : 'in progress'}`
      : 'Incident';
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
    ...statusBlocks(run, 1, usage),
  ];
  return { text: `${NOTIFICATION[run.state]}: ${number}${untrusted(incident.title, 2000)}`, blocks };
}

/**
 * A storm group's one message: "7 incidents on Checkout API resolved 14:00–14:08 UTC", its incidents as
 * links (as many as fit), and the run's status with one Approve / Skip for the whole group.
 */
function renderStormMessage(
  run: PostmortemRun,
  storm: readonly StormMember[],
  usage: BudgetUsage | undefined,
): SlackMessage {
  const service = untrusted(run.incident.serviceName, 300);
  const times = storm.map((m) => m.resolvedAt);
  const span = `${clock(Math.min(...times))}–${clock(Math.max(...times))} UTC`;
  const summary = `${storm.length} incidents on ${service} resolved ${span}`;
  const list = cappedList(
    storm.map((m) => {
      const i = m.incident;
      const label = i.number !== null ? `#${i.number}` : untrusted(i.id, 40);
      return `• ${link(i.htmlUrl, label)} ${untrusted(i.title, 150)}${i.priority ? ` (${untrusted(i.priority, 20)})` : ''}`;
    }),
    { maxItems: 15, maxChars: 2800, separator: '\n', more: (n) => `…and ${n} more` },
  );
  const priorities = [...new Set(storm.map((m) => m.incident.priority ?? 'none'))];
  const fields = [field('Service', service), field('Priorities', untrusted(priorities.join(', '), 200))];
  const blocks: KnownBlock[] = [
    section(`:cyclone: *${summary}*`),
    section(list),
    { type: 'section', fields },
    ...statusBlocks(run, storm.length, usage),
  ];
  return { text: `${NOTIFICATION[run.state]}: ${summary}`, blocks };
}

/** HH:MM in UTC. */
function clock(ms: number): string {
  return new Date(ms).toISOString().slice(11, 16);
}

const NOTIFICATION: Record<PostmortemRun['state'], string> = {
  awaiting_approval: 'Postmortem needs approval',
  skipped: 'Postmortem skipped',
  expired: 'Postmortem approval expired',
  queued: 'Postmortem waiting for a free Devin session',
  starting: 'Postmortem starting',
  started: 'Postmortem in progress',
  needs_input: 'Devin needs input on a postmortem',
  finished: 'Postmortem ready',
  start_failed: 'Postmortem could not start',
  session_failed: 'Postmortem session failed',
  stopped: 'Postmortem stopped',
  abandoned: 'Postmortem no longer followed',
};

function field(name: string, value: string) {
  return { type: 'mrkdwn' as const, text: `*${name}*\n${value}`, verbatim: true };
}

function context(text: string): KnownBlock {
  return { type: 'context', elements: [{ type: 'mrkdwn', text, verbatim: true }] };
}

function section(text: string): KnownBlock {
  return { type: 'section', text: { type: 'mrkdwn', text, verbatim: true } };
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

function actions(blockId: string, ...elements: ReturnType<typeof button>[]): KnownBlock {
  return { type: 'actions', block_id: blockId, elements };
}

/** Who set the run going, in words: by priority, by approval, by asking, or early. */
function origin(run: PostmortemRun, stormSize = 1): string {
  const who = run.decidedBy ? mention(run.decidedBy) : 'someone';
  const priority = untrusted(run.incident.priority ?? 'none', 50);
  if (run.budgetOverrideBy) return overrideText(run, priority);
  if (stormSize > 1 && run.trigger === 'approval' && !run.decidedBy) {
    return 'Started automatically (an incident with an auto-start priority joined the group).';
  }
  if (run.trigger === 'auto') return `Started automatically (priority ${priority}).`;
  if (run.trigger === 'early') return `Started early, when the ${priority} incident was acknowledged.`;
  if (run.trigger === 'manual') return `${who} asked for a postmortem.`;
  return `Approved by ${who}.`;
}

const stopButton = (run: PostmortemRun) =>
  actions('postmortem_running', button(STOP_ACTION_ID, 'Stop', run.id, 'danger'));

function statusBlocks(run: PostmortemRun, stormSize: number, usage: BudgetUsage | undefined): KnownBlock[] {
  const who = run.decidedBy ? mention(run.decidedBy) : 'someone';
  const session = link(run.devinUrl, 'open the session');
  const gathering = run.trigger === 'early' && run.finalizeSentAt === null;
  switch (run.state) {
    case 'awaiting_approval': {
      const left = budgetLeftText(usage);
      return [
        ...(run.budgetHold ? [context(budgetHoldText(run.budgetHold, usage))] : []),
        section(
          stormSize > 1
            ? `Should Devin investigate these ${stormSize} incidents and write one postmortem for them?`
            : 'Should Devin investigate this incident and write its postmortem?',
        ),
        ...(left ? [context(left)] : []),
        actions(
          'postmortem_decision',
          button(APPROVE_ACTION_ID, 'Approve', run.id, 'primary'),
          button(SKIP_ACTION_ID, 'Skip', run.id),
        ),
      ];
    }
    case 'queued':
      return [
        context(`:double_vertical_bar: ${origin(run, stormSize)} Devin session ${waitingText(usage)}`),
        stopButton(run),
      ];
    case 'skipped':
      return [
        context(`:fast_forward: Postmortem skipped by ${who}.`),
        actions('postmortem_skipped', button(START_ANYWAY_ACTION_ID, 'Start anyway', run.id)),
      ];
    case 'expired':
      return [
        context(':hourglass: Nobody approved or skipped this postmortem in time; the request expired.'),
      ];
    case 'starting':
      return [
        context(`:hourglass_flowing_sand: ${origin(run, stormSize)} Starting a Devin postmortem session…`),
        stopButton(run),
      ];
    case 'started':
      return [
        context(
          gathering
            ? `:mag: ${origin(run, stormSize)} Devin is gathering evidence while the incident is open: ${session}`
            : `:white_check_mark: ${origin(run, stormSize)} Devin is working on the postmortem: ${session}`,
        ),
        stopButton(run),
      ];
    case 'needs_input':
      return [
        context(
          `:raising_hand: ${origin(run, stormSize)} Devin is waiting for a person (${devinState(run)}): ${session}`,
        ),
        stopButton(run),
      ];
    case 'finished':
      return [
        context(`:memo: ${origin(run, stormSize)} Postmortem ready: ${pullRequestLinks(run)} · ${session}`),
      ];
    case 'start_failed':
      return [
        context(
          `:warning: ${origin(run, stormSize)} The Devin session could not be started: ${untrusted(run.error ?? 'unknown error', 1500)}`,
        ),
        actions('postmortem_failed', button(RETRY_ACTION_ID, 'Retry', run.id, 'primary')),
      ];
    case 'session_failed':
      return [
        context(
          `:x: ${origin(run, stormSize)} The Devin session failed: ${untrusted(run.error ?? 'unknown error', 1500)} · ${session}`,
        ),
        actions('postmortem_failed', button(RETRY_ACTION_ID, 'Retry', run.id, 'primary')),
      ];
    case 'stopped':
      return [
        context(
          `:octagonal_sign: ${origin(run, stormSize)} Stopped by ${run.stoppedBy ? mention(run.stoppedBy) : 'someone'}. ${session}`,
        ),
      ];
    case 'abandoned':
      return [
        context(
          `:zzz: ${origin(run, stormSize)} ${untrusted(run.error ?? 'No longer followed.', 1000)}. ${session}`,
        ),
      ];
  }
}

/** The run's PR links for its message: a few, and how many more (the thread reply lists more). */
function pullRequestLinks(run: PostmortemRun): string {
  const prs = run.pullRequests;
  if (prs.length === 0) return 'no pull request reported';
  return cappedList(
    prs.map((u, i) => link(u, `pull request${prs.length > 1 ? ` ${i + 1}` : ''}`)),
    { maxItems: 5, maxChars: 1200, separator: ', ', more: (n) => `…and ${n} more in the thread` },
  );
}

function devinState(run: PostmortemRun): string {
  return untrusted([run.devinStatus, run.devinStatusDetail].filter(Boolean).join(': ') || 'unknown', 80);
}

/** A reply in the run's thread, for the transitions people want to hear about. */
export function renderThreadReply(
  run: PostmortemRun,
  kind: ThreadReplyKind,
  approvalExpireAfterMs: number,
): SlackMessage {
  const session = link(run.devinUrl, 'open the session');
  switch (kind) {
    case 'needs_input':
      return reply(
        `:raising_hand: Devin needs a person to go on with this postmortem (${devinState(run)}): ${session}`,
        'Devin needs input on the postmortem',
      );
    case 'finished':
      return { text: 'The postmortem is ready', blocks: finishedBlocks(run) };
    case 'session_failed':
      return {
        text: 'The postmortem session failed',
        blocks: [
          section(
            `:x: The Devin session failed: ${untrusted(run.error ?? 'unknown error', 1500)}. ${session}`,
          ),
          actions('postmortem_failed', button(RETRY_ACTION_ID, 'Retry', run.id, 'primary')),
        ],
      };
    case 'abandoned':
      return reply(
        `:zzz: ${untrusted(run.error ?? 'The bot stopped following this session', 1000)}. ${session}`,
        'No longer followed',
      );
    case 'reminder':
      return reply(
        `:bell: Reminder: this postmortem is still waiting for *Approve* or *Skip*. It expires ${formatDurationSetting(approvalExpireAfterMs)} after the incident resolved.`,
        'Postmortem still waiting for approval',
      );
  }
}

function reply(text: string, notification: string): SlackMessage {
  return { text: notification, blocks: [section(text)] };
}

/** The structured result, compact: PR links, summary, root cause, impact, up to ten action items. */
function finishedBlocks(run: PostmortemRun): KnownBlock[] {
  const r: PostmortemResult = run.result ?? {};
  const prs = cappedList(
    run.pullRequests.map((u) => link(u, untrusted(u.replace(/^https:\/\//, ''), 200))),
    { maxItems: 10, maxChars: 2600, separator: '\n', more: (n) => `…and ${n} more pull requests` },
  );
  const blocks: KnownBlock[] = [
    section(`:memo: *The postmortem is ready.* ${prs ? `\n${prs}` : 'Devin reported no pull request.'}`),
  ];
  if (r.summary) blocks.push(section(`*Summary*\n${untrusted(r.summary, 2500)}`));
  const fields = [
    ...(r.root_cause ? [field('Root cause', untrusted(r.root_cause, 1900))] : []),
    ...(r.impact ? [field('Impact', untrusted(r.impact, 1900))] : []),
  ];
  if (fields.length > 0) blocks.push({ type: 'section', fields });
  const items = r.action_items ?? [];
  if (items.length > 0) {
    const lines = items
      .slice(0, 10)
      .map((a) => `• ${untrusted(a.title, 200)}${a.owner ? ` (${untrusted(a.owner, 60)})` : ''}`);
    if (items.length > 10) lines.push(`…and ${items.length - 10} more in the pull request`);
    blocks.push(section(`*Action items*\n${lines.join('\n')}`));
  }
  blocks.push(context(link(run.devinUrl, 'Open the Devin session')));
  return blocks;
}
