import { createHmac } from 'node:crypto';

/**
 * Requests as Slack sends them to an app's request URL (`POST /slack/events`): form-encoded, signed with
 * the app's signing secret (docs.slack.dev/authentication/verifying-requests-from-slack). The tests and
 * `npm run demo` both drive the real bot through these, so every check the bot makes is the real one.
 */

const TEAM = { id: 'T0001', domain: 'acme' };

export function slackSignature(secret: string, timestamp: number | string, body: string): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
}

/** A signed form post to the app's `/slack/events`, dated `timestamp` (Unix seconds, default now). */
export function postSignedSlackForm(
  appUrl: string,
  signingSecret: string,
  body: string,
  timestamp = Math.floor(Date.now() / 1000),
): Promise<Response> {
  return fetch(`${appUrl}/slack/events`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-slack-request-timestamp': String(timestamp),
      'x-slack-signature': slackSignature(signingSecret, timestamp, body),
    },
    body,
  });
}

/** A signed Events API request (JSON), as Slack delivers an event the app subscribed to. */
export function postSignedSlackEvent(
  appUrl: string,
  signingSecret: string,
  event: Record<string, unknown>,
  timestamp = Math.floor(Date.now() / 1000),
): Promise<Response> {
  const body = JSON.stringify({
    token: 'deprecated-verification-token',
    team_id: TEAM.id,
    api_app_id: 'A0BOT0001',
    event: { ...event, event_ts: `${timestamp}.000100` },
    type: 'event_callback',
    event_id: `Ev${timestamp}${Math.floor(Math.random() * 1e6)}`,
    event_time: timestamp,
  });
  return fetch(`${appUrl}/slack/events`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-slack-request-timestamp': String(timestamp),
      'x-slack-signature': slackSignature(signingSecret, timestamp, body),
    },
    body,
  });
}

/** The form body of an interactivity request: one `payload` field holding JSON. */
export function interactionForm(payload: unknown): string {
  return new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
}

function user(userId: string) {
  return { id: userId, username: userId.toLowerCase(), name: userId.toLowerCase(), team_id: TEAM.id };
}

interface ButtonElement {
  type?: string;
  action_id?: string;
  value?: string;
  text?: unknown;
}

interface ActionsBlock {
  type?: string;
  block_id?: string;
  elements?: ButtonElement[];
}

export interface BlockActionsInput {
  /** The message the button is on, as posted (its blocks hold the button). */
  message: { channel: string; ts: string; blocks: unknown[] };
  actionId: string;
  userId: string;
  responseUrl: string;
  /** A private (ephemeral) message: Slack sends no `message` for those, only the container. */
  ephemeral?: boolean;
}

/** The block_actions payload Slack sends when `userId` clicks the button `actionId` on a message. */
export function blockActionsPayload(input: BlockActionsInput): Record<string, unknown> {
  const { message, actionId, userId } = input;
  const actionsBlock = (message.blocks as ActionsBlock[]).find(
    (b) => b.type === 'actions' && b.elements?.some((e) => e.action_id === actionId),
  );
  const button = actionsBlock?.elements?.find((e) => e.action_id === actionId);
  if (!actionsBlock || !button) throw new Error(`no ${actionId} button on message ${message.ts}`);
  return {
    type: 'block_actions',
    team: TEAM,
    user: user(userId),
    api_app_id: 'A0001',
    token: 'legacy-verification-token',
    container: {
      type: 'message',
      message_ts: message.ts,
      channel_id: message.channel,
      is_ephemeral: input.ephemeral === true,
    },
    trigger_id: `${Date.now()}.5678.abcdef`,
    channel: { id: message.channel, name: 'incidents' },
    ...(input.ephemeral
      ? {}
      : {
          message: {
            type: 'message',
            ts: message.ts,
            text: 'x',
            blocks: message.blocks,
            user: 'UBOT0001',
            bot_id: 'BBOT0001',
          },
        }),
    response_url: input.responseUrl,
    actions: [
      {
        type: 'button',
        action_id: actionId,
        block_id: actionsBlock.block_id,
        value: button.value,
        text: button.text,
        action_ts: String(Date.now() / 1000),
      },
    ],
    state: { values: {} },
  };
}

/**
 * The block_actions payload Slack sends when `userId` clicks the button `actionId` in an open modal: the
 * view as the bot last drew it, with `values` as the current state of its inputs (checkboxes included).
 */
export function viewBlockActionsPayload(input: {
  view: { id: string; view: Record<string, unknown> };
  actionId: string;
  /** Which of several buttons with that action_id (by its value); the first when not given. */
  value?: string;
  userId: string;
  values?: Record<string, Record<string, unknown>>;
}): Record<string, unknown> {
  const { view, actionId, userId } = input;
  const blocks = (view.view.blocks ?? []) as ActionsBlock[];
  const actionsBlock = blocks.find(
    (b) =>
      b.type === 'actions' &&
      b.elements?.some(
        (e) => e.action_id === actionId && (input.value === undefined || e.value === input.value),
      ),
  );
  const button = actionsBlock?.elements?.find(
    (e) => e.action_id === actionId && (input.value === undefined || e.value === input.value),
  );
  if (!actionsBlock || !button) throw new Error(`no ${actionId} button in view ${view.id}`);
  return {
    type: 'block_actions',
    team: TEAM,
    user: user(userId),
    api_app_id: 'A0001',
    token: 'legacy-verification-token',
    container: { type: 'view', view_id: view.id },
    trigger_id: `${Date.now()}.9012.abcdef`,
    view: {
      ...view.view,
      id: view.id,
      team_id: TEAM.id,
      type: 'modal',
      hash: '1.abc',
      state: { values: input.values ?? {} },
      app_id: 'A0001',
      bot_id: 'BBOT0001',
    },
    actions: [
      {
        type: 'button',
        action_id: actionId,
        block_id: actionsBlock.block_id,
        value: button.value,
        text: button.text,
        action_ts: String(Date.now() / 1000),
      },
    ],
  };
}

export interface SlashCommandInput {
  text: string;
  userId: string;
  channelId: string;
  responseUrl: string;
  triggerId?: string;
}

/** The form body of `/postmortem <text>` as Slack sends it. */
export function slashCommandForm(input: SlashCommandInput): string {
  return new URLSearchParams({
    token: 'legacy-verification-token',
    team_id: TEAM.id,
    team_domain: TEAM.domain,
    channel_id: input.channelId,
    channel_name: 'incidents',
    user_id: input.userId,
    user_name: input.userId.toLowerCase(),
    command: '/postmortem',
    text: input.text,
    api_app_id: 'A0001',
    response_url: input.responseUrl,
    trigger_id: input.triggerId ?? `${Date.now()}.1234.abcdef`,
  }).toString();
}

/** The view_submission payload of the modal `view` (as opened), with the given input state. */
export function viewSubmissionPayload(
  view: { id: string; view: Record<string, unknown> },
  values: Record<string, Record<string, unknown>>,
  userId: string,
): Record<string, unknown> {
  return {
    type: 'view_submission',
    team: TEAM,
    user: user(userId),
    api_app_id: 'A0001',
    token: 'legacy-verification-token',
    trigger_id: `${Date.now()}.2.3`,
    view: {
      ...view.view,
      id: view.id,
      team_id: TEAM.id,
      type: 'modal',
      hash: '1.abc',
      state: { values },
      app_id: 'A0001',
      bot_id: 'BBOT0001',
    },
    response_urls: [],
  };
}
