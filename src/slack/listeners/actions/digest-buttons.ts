import type {
  AllMiddlewareArgs,
  App,
  BlockAction,
  BlockButtonAction,
  SlackActionMiddlewareArgs,
} from '@slack/bolt';
import type { ApprovalDigest, BulkDecision, DigestOutcome } from '../../../postmortems/digest.js';
import {
  DIGEST_APPROVE_ALL_ACTION_ID,
  DIGEST_REVIEW_ACTION_ID,
  DIGEST_SKIP_ALL_ACTION_ID,
  digestOutcomeReply,
  REVIEW_APPROVE_ACTION_ID,
  REVIEW_PAGE_ACTION_ID,
  REVIEW_PICK_ACTION_ID,
  REVIEW_PICK_BLOCK_ID,
  REVIEW_SKIP_ACTION_ID,
  readReviewMetadata,
  renderReviewModal,
} from '../../digest.js';
import { outcomeReply } from '../../replies.js';

type ButtonArgs = SlackActionMiddlewareArgs<BlockButtonAction> & AllMiddlewareArgs;
type AnyActionArgs = SlackActionMiddlewareArgs<BlockAction> & AllMiddlewareArgs;

/**
 * The digest message's buttons (Approve all, Skip all, Review) and its Review modal's. Ack at once, then
 * the domain decides (digest.ts), one lifecycle step per request; the person who clicked is told privately
 * what it came to. Nothing changes for someone who may not decide.
 */
export function registerDigestActions(app: App, digest: ApprovalDigest): void {
  app.action<BlockButtonAction>(DIGEST_APPROVE_ALL_ACTION_ID, decideAll(digest, 'approve'));
  app.action<BlockButtonAction>(DIGEST_SKIP_ALL_ACTION_ID, decideAll(digest, 'skip'));
  app.action<BlockButtonAction>(DIGEST_REVIEW_ACTION_ID, openReview(digest));
  app.action<BlockButtonAction>(REVIEW_APPROVE_ACTION_ID, decideChecked(digest, 'approve'));
  app.action<BlockButtonAction>(REVIEW_SKIP_ACTION_ID, decideChecked(digest, 'skip'));
  app.action<BlockButtonAction>(REVIEW_PAGE_ACTION_ID, turnPage(digest));
  // Checking a box is only a choice: the state is read when Approve checked / Skip checked is clicked.
  app.action<BlockAction>(REVIEW_PICK_ACTION_ID, async ({ ack }: AnyActionArgs) => {
    await ack();
  });
}

const channelOf = (body: BlockButtonAction) => body.channel?.id ?? body.container?.channel_id ?? '';

function decideAll(digest: ApprovalDigest, decision: BulkDecision) {
  return async ({ ack, action, body, respond }: ButtonArgs): Promise<void> => {
    await ack();
    const openedUpTo = Number(action.value);
    const outcome: DigestOutcome = await digest.decideAll(
      channelOf(body),
      Number.isFinite(openedUpTo) ? openedUpTo : 0,
      body.user.id,
      decision,
    );
    await respond({ response_type: 'ephemeral', replace_original: false, ...digestOutcomeReply(outcome) });
  };
}

function openReview(digest: ApprovalDigest) {
  return async ({ ack, body, client, respond }: ButtonArgs): Promise<void> => {
    await ack();
    const denied = await digest.mayDecide(body.user.id);
    if (denied) {
      await respond({ response_type: 'ephemeral', replace_original: false, ...outcomeReply(denied) });
      return;
    }
    const page = await digest.reviewPage(channelOf(body), 0);
    await client.views.open({ trigger_id: body.trigger_id, view: renderReviewModal(page) });
  };
}

/** The boxes checked on the modal's current page, as Slack sends the view's state with the click. */
function checked(body: BlockButtonAction): string[] {
  const values = body.view?.state?.values as
    | Record<string, Record<string, { selected_options?: { value?: string }[] }>>
    | undefined;
  const options = values?.[REVIEW_PICK_BLOCK_ID]?.[REVIEW_PICK_ACTION_ID]?.selected_options ?? [];
  return options.map((o) => o.value ?? '').filter((v) => v !== '');
}

function decideChecked(digest: ApprovalDigest, decision: BulkDecision) {
  return async ({ ack, body, client }: ButtonArgs): Promise<void> => {
    await ack();
    const view = body.view;
    const meta = readReviewMetadata(view?.private_metadata);
    if (!view || !meta) return;
    const picked = checked(body);
    const note =
      picked.length === 0
        ? `Check the requests to ${decision} first.`
        : digestOutcomeReply(await digest.decideSome(meta.channel, picked, body.user.id, decision)).text;
    const page = await digest.reviewPage(meta.channel, meta.page);
    await client.views.update({ view_id: view.id, view: renderReviewModal(page, note) });
  };
}

function turnPage(digest: ApprovalDigest) {
  return async ({ ack, action, body, client }: ButtonArgs): Promise<void> => {
    await ack();
    const view = body.view;
    const meta = readReviewMetadata(view?.private_metadata);
    if (!view || !meta) return;
    const page = await digest.reviewPage(meta.channel, Number(action.value) || 0);
    await client.views.update({ view_id: view.id, view: renderReviewModal(page) });
  };
}
