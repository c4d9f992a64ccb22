import type { types } from '@slack/bolt';
import type { PostmortemRun, RunState } from '../postmortems/model.js';
import type { DenialReason, Outcome, RequestFailureCode, StatusView } from '../postmortems/service.js';
import { usageLine } from './budget-text.js';
import { cappedList, link, mention, untrusted } from './format.js';
import { RUN_AGAIN_ACTION_ID } from './messages.js';

/**
 * The one place where outcomes and errors become words a person reads: private (ephemeral) replies to
 * commands and clicks. Channel messages are rendered in messages.ts.
 */

type KnownBlock = types.KnownBlock;

export interface Reply {
  text: string;
  blocks?: KnownBlock[];
}

export const USAGE = [
  '*/postmortem* — postmortems written by Devin for resolved incidents',
  '• `/postmortem &lt;incident ID, number or URL&gt;`: start the postmortem of a PagerDuty incident now',
  '• `/postmortem`: describe an incident that is not in PagerDuty and start its postmortem',
  '• `/postmortem status [incident | all]`: this channel’s recent postmortem runs, one incident’s runs, or (approvers) every channel’s',
  '• `/postmortem help`: this text',
  'P1/P2 incidents (or your configured priorities) start by themselves when they resolve; others ask here with *Approve* / *Skip*.',
].join('\n');

const STATE_WORDS: Record<RunState, string> = {
  awaiting_approval: 'waiting for approval',
  skipped: 'skipped',
  expired: 'approval expired',
  queued: 'waiting for a free Devin session',
  starting: 'starting',
  started: 'Devin session running',
  needs_input: 'Devin needs input',
  finished: 'postmortem ready',
  start_failed: 'could not start',
  session_failed: 'Devin session failed',
  stopped: 'stopped',
  abandoned: 'no longer followed',
};

export function incidentLabel(run: PostmortemRun): string {
  const i = run.incident;
  const name = i.number !== null ? `#${i.number}` : 'Ad-hoc incident';
  return `${link(i.htmlUrl, name)} ${untrusted(i.title, 200)}`;
}

export function runSummary(run: PostmortemRun): string {
  const parts = [`${incidentLabel(run)} — ${STATE_WORDS[run.state]}`];
  if (run.attempt > 1) parts.push(`run ${run.attempt}`);
  if (run.decidedBy)
    parts.push(
      `${run.trigger === 'manual' ? 'asked by' : run.state === 'skipped' ? 'skipped by' : 'approved by'} ${mention(run.decidedBy)}`,
    );
  else if (run.trigger === 'auto') parts.push('started automatically');
  if (run.devinUrl) parts.push(link(run.devinUrl, 'Devin session'));
  if (run.pullRequests.length > 0) {
    const prs = run.pullRequests.map((pr, i) => link(pr, run.pullRequests.length > 1 ? `PR ${i + 1}` : 'PR'));
    parts.push(
      cappedList(prs, { maxItems: 3, maxChars: 600, separator: ' · ', more: (n) => `…and ${n} more PRs` }),
    );
  }
  if (run.budgetOverrideBy) parts.push(`over budget: override by ${mention(run.budgetOverrideBy)}`);
  else if (run.budgetHold && run.state === 'awaiting_approval') parts.push("held: today's budget is reached");
  if (run.stoppedBy) parts.push(`stopped by ${mention(run.stoppedBy)}`);
  if (['start_failed', 'session_failed', 'abandoned'].includes(run.state) && run.error)
    parts.push(untrusted(run.error, 300));
  return parts.join(' · ');
}

/** What a person is told privately about what their request came to. */
export function outcomeReply(outcome: Outcome): Reply {
  switch (outcome.kind) {
    case 'done':
      return { text: `Done: ${runSummary(outcome.run)}` };
    case 'exists': {
      const run = outcome.run;
      const text = `This incident already has a postmortem run: ${runSummary(run)}. Start another one only if the first missed the mark.`;
      return {
        text,
        blocks: [
          { type: 'section', text: { type: 'mrkdwn', text, verbatim: true } },
          {
            type: 'actions',
            block_id: 'postmortem_run_again',
            elements: [
              {
                type: 'button',
                action_id: RUN_AGAIN_ACTION_ID,
                text: { type: 'plain_text', text: 'Run again' },
                value: `${run.incidentId}|${run.attempt}`,
                confirm: {
                  title: { type: 'plain_text', text: 'Start another session?' },
                  text: { type: 'plain_text', text: 'This starts a second Devin session for this incident.' },
                  confirm: { type: 'plain_text', text: 'Run again' },
                  deny: { type: 'plain_text', text: 'Cancel' },
                },
              },
            ],
          },
        ],
      };
    }
    case 'stale':
      return { text: staleText(outcome.run) };
    case 'not_allowed':
      return { text: deniedText(outcome.reason, outcome.approvers) };
    case 'failed':
      return { text: failureText(outcome.code, outcome.message) };
  }
}

function staleText(run: PostmortemRun | undefined): string {
  if (!run) return 'This postmortem request no longer exists.';
  const who = run.decidedBy ? mention(run.decidedBy) : 'automatically';
  switch (run.state) {
    case 'skipped':
      return `This postmortem was already skipped by ${who}.`;
    case 'expired':
      return 'This postmortem request expired; use `/postmortem` with the incident to start one.';
    case 'queued':
    case 'starting':
    case 'started':
    case 'needs_input':
      return `This postmortem was already started by ${who}; ${STATE_WORDS[run.state]}.`;
    case 'finished':
      return 'This postmortem is already finished.';
    case 'start_failed':
    case 'session_failed':
      return 'This postmortem failed; use Retry on its message.';
    case 'stopped':
      return `This postmortem was already stopped by ${run.stoppedBy ? mention(run.stoppedBy) : 'someone'}.`;
    case 'abandoned':
      return 'The bot no longer follows this postmortem; use `/postmortem` with the incident to run it again.';
    case 'awaiting_approval':
      return 'This postmortem is still waiting for a decision; please try again.';
  }
}

/** Errors a person can act on, said as such: the one place a failure code becomes words. */
export function failureText(code: RequestFailureCode, message: string): string {
  switch (code) {
    case 'incident_source_missing':
      return 'Looking incidents up needs a PagerDuty API token: an admin sets `PAGERDUTY_API_TOKEN` (PagerDuty → Integrations → API Access Keys, read-only is enough) and restarts the bot. Until then, `/postmortem` without arguments starts one from a form.';
    case 'incident_not_found':
      return 'That incident was not found in PagerDuty. Check the ID, number or URL.';
    case 'incident_source_forbidden':
      return `${untrusted(message, 300)}. An admin should check PAGERDUTY_API_TOKEN.`;
    case 'incident_source_rate_limited':
      return 'PagerDuty is rate-limiting the bot right now; please try again in a minute.';
    case 'incident_source_unavailable':
      return `PagerDuty could not be reached (${untrusted(message, 200)}); please try again shortly.`;
    case 'incident_source_bad_response':
      return 'PagerDuty answered with something the bot could not read; please try again shortly, and tell an admin if it keeps happening.';
    case 'approvers_unavailable':
      return `The list of postmortem approvers could not be checked, so nothing was changed: ${untrusted(message, 500)}`;
  }
}

/** Why someone may not spend, said so they know whom to ask. Devin sessions cost money. */
function deniedText(reason: DenialReason, approvers: string): string {
  switch (reason) {
    case 'not_an_approver':
      return `Only postmortem approvers can do this (${approvers}). Nothing was changed; ask one of them.`;
    case 'guest':
      return 'Guests cannot start or decide postmortems unless an admin lists them by user ID in SLACK_APPROVERS. Nothing was changed; ask a member of the team.';
    case 'outside':
      return 'People from outside this workspace’s organisation (Slack Connect) cannot start or decide postmortems unless an admin lists them by user ID in SLACK_APPROVERS. Nothing was changed.';
    case 'bot':
      return 'Only people can start or decide postmortems. Nothing was changed.';
  }
}

/** The warning `/postmortem status` and the Home tab show while jobs have failed for good. */
export function deadJobsWarning(deadJobs: number): string | undefined {
  if (deadJobs === 0) return undefined;
  return `:warning: ${deadJobs} background job${deadJobs === 1 ? ' has' : 's have'} failed for good and wait${deadJobs === 1 ? 's' : ''} for an operator: \`npm run jobs -- list\`, then \`retry\` or \`discard\` (README, Operating it).`;
}

export function statusReply(view: Extract<StatusView, { kind: 'runs' }>): Reply {
  const reply = runsReply(view);
  const extra = [view.usage ? usageLine(view.usage) : undefined, deadJobsWarning(view.deadJobs)].filter(
    (l): l is string => l !== undefined,
  );
  return extra.length > 0 ? { text: [reply.text, ...extra].join('\n') } : reply;
}

function runsReply(view: Extract<StatusView, { kind: 'runs' }>): Reply {
  const { runs, scope } = view;
  const lines = runs.map((r) => `• ${runSummary(r)}`);
  const elsewhere =
    view.hiddenElsewhere > 0
      ? `\n${view.hiddenElsewhere} more run${view.hiddenElsewhere === 1 ? '' : 's'} of this incident ${view.hiddenElsewhere === 1 ? 'was' : 'were'} reported in other channels; approvers can see ${view.hiddenElsewhere === 1 ? 'it' : 'them'} here.`
      : '';
  switch (scope.kind) {
    case 'incident':
      if (runs.length === 0) {
        return {
          text: `No postmortem runs for incident ${untrusted(scope.ref, 100)} in this channel.${elsewhere}`,
        };
      }
      return {
        text: `Postmortem runs for ${incidentLabel(runs[0] as PostmortemRun)}:\n${lines.join('\n')}${elsewhere}`,
      };
    case 'channel':
      if (runs.length === 0) {
        return {
          text: 'No postmortem runs reported in this channel yet. Approvers: `/postmortem status all`.',
        };
      }
      return { text: `Recent postmortem runs in this channel:\n${lines.join('\n')}` };
    case 'all':
      if (runs.length === 0) return { text: 'No postmortem runs yet.' };
      return { text: `Recent postmortem runs, all channels:\n${lines.join('\n')}` };
  }
}
