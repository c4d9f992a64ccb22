import type { types } from '@slack/bolt';
import type { DigestOutcome, ReviewPage } from '../postmortems/digest.js';
import type { PostmortemRun } from '../postmortems/model.js';
import type { ApprovalDigestView, DigestChannel } from '../postmortems/ports.js';
import type { SlackChat } from './chat.js';
import { cappedList, link, truncateEscaped, untrusted } from './format.js';
import type { SlackMessage } from './messages.js';
import type { ChannelPacer } from './pacer.js';
import { failureText, outcomeReply, type Reply } from './replies.js';

/** Action IDs on the digest message and in its Review modal: part of the contract with posted messages. */
export const DIGEST_APPROVE_ALL_ACTION_ID = 'postmortem_digest_approve_all';
export const DIGEST_SKIP_ALL_ACTION_ID = 'postmortem_digest_skip_all';
export const DIGEST_REVIEW_ACTION_ID = 'postmortem_digest_review';
export const REVIEW_VIEW_ID = 'postmortem_digest_review';
export const REVIEW_PICK_ACTION_ID = 'postmortem_review_pick';
export const REVIEW_APPROVE_ACTION_ID = 'postmortem_review_approve';
export const REVIEW_SKIP_ACTION_ID = 'postmortem_review_skip';
export const REVIEW_PAGE_ACTION_ID = 'postmortem_review_page';
export const REVIEW_PICK_BLOCK_ID = 'review_pick';

type KnownBlock = types.KnownBlock;

const section = (text: string): KnownBlock => ({
  type: 'section',
  text: { type: 'mrkdwn', text, verbatim: true },
});
const context = (text: string): KnownBlock => ({
  type: 'context',
  elements: [{ type: 'mrkdwn', text, verbatim: true }],
});
const plain = (text: string) => ({ type: 'plain_text' as const, text });
const button = (actionId: string, text: string, value: string, style?: 'primary' | 'danger') => ({
  type: 'button' as const,
  action_id: actionId,
  text: plain(text),
  value,
  ...(style ? { style } : {}),
});

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** One waiting request in a list: its incident (linked), title, service and priority, all escaped. */
function requestLine(run: PostmortemRun): string {
  const i = run.incident;
  const label = i.number !== null ? `#${i.number}` : 'Incident';
  return `• ${link(i.htmlUrl, label)} ${untrusted(i.title, 150)} · ${untrusted(i.serviceName, 80)} · ${untrusted(i.priority ?? 'no priority', 30)}${run.budgetHold !== null ? ' · _held by today’s budget_' : ''}`;
}

/**
 * The runs started by policy whose messages are in the digest's thread (informational: nothing to decide),
 * the newest few listed.
 */
function startedBlocks(view: ApprovalDigestView): KnownBlock[] {
  const started = view.started;
  if (!started || started.total === 0) return [];
  const list = cappedList(started.newest.map(requestLine), {
    maxItems: started.newest.length,
    maxChars: 2000,
    separator: '\n',
    more: (n) => `…and ${n} more`,
  });
  const older = started.total - started.newest.length;
  return [
    section(
      `:robot_face: *Started automatically: ${started.total}* (by priority, no decision needed; ${started.total === 1 ? 'its message is' : 'their messages are'} in this thread)${started.newest.length > 0 ? `\n${list}` : ''}`,
    ),
    ...(older > 0 ? [context(`…and ${plural(older, 'earlier one')}, in this thread.`)] : []),
  ];
}

/**
 * The channel's digest message, drawn from the store: how many requests wait, the newest, and the bulk
 * buttons (whose value is when the newest counted request was opened, so a click decides what was shown);
 * and the runs started by policy whose messages are in its thread.
 */
export function renderDigestMessage(view: ApprovalDigestView): SlackMessage {
  const started = startedBlocks(view);
  if (view.inDigest === 0) {
    const rest =
      view.total > 0
        ? ` ${plural(view.total, 'request')} still wait${view.total === 1 ? 's' : ''} in ${view.total === 1 ? 'its own message' : 'their own messages'}.`
        : '';
    if (started.length > 0) {
      const n = view.started?.total ?? 0;
      return {
        text: `${plural(n, 'postmortem')} started automatically in this storm`,
        blocks: [
          context(`:inbox_tray: *Postmortem digest:* nothing waits for a decision here.${rest}`),
          ...started,
        ],
      };
    }
    return {
      text: 'Postmortem requests: nothing waits in this digest any more',
      blocks: [
        context(`:white_check_mark: *Postmortem approval digest:* nothing waits here any more.${rest}`),
      ],
    };
  }
  const list = cappedList(view.newest.map(requestLine), {
    maxItems: view.newest.length,
    maxChars: 2800,
    separator: '\n',
    more: (n) => `…and ${n} more`,
  });
  const older = view.total - view.newest.length;
  const upTo = String(view.openedUpTo ?? 0);
  // Approving a run the day's budget holds overrides the budget: said here, and asked again on Approve all.
  const held = view.held ?? 0;
  const approveAll = button(DIGEST_APPROVE_ALL_ACTION_ID, `Approve all ${view.total}`, upTo, 'primary');
  return {
    text: `${plural(view.total, 'postmortem request')} wait${view.total === 1 ? 's' : ''} for a decision`,
    blocks: [
      section(
        `:inbox_tray: *${plural(view.incidents, 'incident')}${view.incidents !== view.total ? ` (in ${plural(view.total, 'request')}: a storm group is one)` : ''} wait${view.incidents === 1 ? 's' : ''} for a postmortem decision in this channel.* Should Devin investigate them and write their postmortems?`,
      ),
      section(`${view.total > view.newest.length ? '*Newest:*\n' : ''}${list}`),
      ...(older > 0 ? [context(`…and ${plural(older, 'older request')}: *Review* lists them all.`)] : []),
      ...(held > 0
        ? [
            context(
              `:warning: ${plural(held, 'of these is', 'of these are')} held by today’s Devin budget: approving ${held === 1 ? 'it' : 'them'} overrides the budget.`,
            ),
          ]
        : []),
      {
        type: 'actions',
        block_id: 'postmortem_digest',
        elements: [
          held > 0
            ? {
                ...approveAll,
                confirm: {
                  title: plain('Over today’s budget'),
                  text: plain(
                    `${held} of these ${held === 1 ? 'is' : 'are'} held by today’s Devin budget. Approving all starts ${view.total === 1 ? 'its session' : `${view.total} sessions`}, over the budget.`,
                  ),
                  confirm: plain('Approve all'),
                  deny: plain('Cancel'),
                },
              }
            : approveAll,
          button(DIGEST_SKIP_ALL_ACTION_ID, `Skip all ${view.total}`, upTo, 'danger'),
          button(DIGEST_REVIEW_ACTION_ID, 'Review', upTo),
        ],
      },
      context(
        `${plural(view.inDigest, 'request')} ${view.inDigest === 1 ? 'is' : 'are'} shown only here, to keep the channel readable. Only approvers can decide; each request is decided once.`,
      ),
      ...started,
    ],
  };
}

/** The Review modal: one page of waiting requests to check, and what the last click came to. */
export function renderReviewModal(page: ReviewPage, note?: string): types.View {
  const blocks: KnownBlock[] = [];
  if (note) blocks.push(context(note));
  if (page.total === 0) {
    blocks.push(section('Nothing waits for a decision in this channel.'));
  } else {
    blocks.push(
      section(
        `*${plural(page.total, 'request')} wait${page.total === 1 ? 's' : ''} for a decision*, newest first · page ${page.page + 1} of ${page.pages}`,
      ),
      {
        type: 'actions',
        block_id: REVIEW_PICK_BLOCK_ID,
        elements: [
          {
            type: 'checkboxes',
            action_id: REVIEW_PICK_ACTION_ID,
            options: page.runs.map((run) => ({
              text: {
                type: 'mrkdwn',
                text: untrusted(
                  `${run.incident.number !== null ? `#${run.incident.number} ` : ''}${run.incident.title}`,
                  75,
                ),
                verbatim: true as const,
              },
              // plain_text (Slack allows nothing else here): shown as typed, so cut but not escaped.
              description: plain(
                truncateEscaped(
                  `${run.budgetHold !== null ? 'Over today’s budget · ' : ''}${run.incident.serviceName} · ${run.incident.priority ?? 'no priority'}`.toWellFormed(),
                  75,
                ),
              ),
              value: run.id,
            })),
          },
        ],
      },
    );
    const nav = [
      button(REVIEW_APPROVE_ACTION_ID, 'Approve checked', 'approve', 'primary'),
      button(REVIEW_SKIP_ACTION_ID, 'Skip checked', 'skip'),
      ...(page.page > 0 ? [button(REVIEW_PAGE_ACTION_ID, '← Newer', String(page.page - 1))] : []),
      ...(page.page < page.pages - 1
        ? [button(REVIEW_PAGE_ACTION_ID, 'Older →', String(page.page + 1))]
        : []),
    ];
    blocks.push({ type: 'actions', block_id: 'review_decide', elements: nav });
  }
  return {
    type: 'modal',
    callback_id: REVIEW_VIEW_ID,
    title: plain('Postmortem requests'),
    close: plain('Done'),
    private_metadata: JSON.stringify({ channel: page.channel, page: page.page }),
    blocks,
  };
}

/** What the modal's private_metadata carries. */
export function readReviewMetadata(
  metadata: string | undefined,
): { channel: string; page: number } | undefined {
  try {
    const parsed = JSON.parse(metadata ?? '') as { channel?: unknown; page?: unknown };
    if (typeof parsed.channel !== 'string' || typeof parsed.page !== 'number') return undefined;
    return { channel: parsed.channel, page: parsed.page };
  } catch {
    return undefined;
  }
}

/** What a decision from the digest came to, in words, for the person who clicked. */
export function digestOutcomeReply(outcome: DigestOutcome): Reply {
  if (outcome.kind === 'not_allowed') return outcomeReply(outcome);
  if (outcome.kind === 'failed') return { text: failureText(outcome.code, outcome.message) };
  const verb = outcome.decision === 'approve' ? 'Approved' : 'Skipped';
  const done =
    outcome.decided === 0
      ? `Nothing to ${outcome.decision}`
      : `${verb} ${plural(outcome.decided, 'request')}`;
  const already =
    outcome.alreadyDecided > 0 ? ` (${plural(outcome.alreadyDecided, 'was', 'were')} already decided)` : '';
  const who =
    outcome.decided > 0 && outcome.decision === 'approve' ? ' Each starts its own Devin session.' : '';
  return { text: `${done}${already}.${who}` };
}

/** The digest as the domain's DigestChannel: posted and updated like a run's message, paced per channel. */
export class SlackDigestChannel implements DigestChannel {
  constructor(
    private readonly chat: SlackChat,
    private readonly pacer: ChannelPacer,
  ) {}

  async postDigest(view: ApprovalDigestView, callKey: number): Promise<{ ts: string }> {
    const posted = await this.pacer.paced(view.channel, callKey, () =>
      this.chat.post(view.channel, renderDigestMessage(view)),
    );
    return { ts: posted.ts };
  }

  async updateDigest(view: ApprovalDigestView, ts: string, callKey: number): Promise<void> {
    await this.pacer.paced(view.channel, callKey, () =>
      this.chat.update(view.channel, ts, renderDigestMessage(view)),
    );
  }
}
