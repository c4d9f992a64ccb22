import { randomBytes } from 'node:crypto';
import type { FakeSlack, PostedMessage } from './stand-ins/fake-slack.js';
import {
  blockActionsPayload,
  interactionForm,
  postSignedSlackForm,
  slashCommandForm,
  viewSubmissionPayload,
} from './stand-ins/slack-requests.js';

/**
 * Slack's client side of the demo: what the channel shows (the bot's messages as posted and updated,
 * private replies, an open modal) and what a person does there (click a button, run `/postmortem`, submit
 * the modal), sent to the bot exactly as Slack sends it: signed requests to `/slack/events`.
 */

export interface ChannelMessage {
  seq: number;
  at: number;
  ts: string;
  threadTs: string | null;
  text: string;
  blocks: unknown[];
  edited: boolean;
}

/** A message only `user` sees (response_url, chat.postEphemeral, or a command's immediate answer). */
export interface PrivateMessage {
  seq: number;
  at: number;
  id: string;
  user: string;
  text: string;
  blocks: unknown[];
}

export interface OpenModal {
  id: string;
  user: string;
  view: Record<string, unknown>;
  /** Problems the bot returned per block (response_action: errors). */
  errors: Record<string, string>;
}

export type Answer = { ok: true; status: number } | { ok: false; status: number; error: string };

interface InputBlock {
  type?: string;
  block_id?: string;
  element?: { type?: string; action_id?: string; options?: { text?: unknown; value?: string }[] };
}

interface SlackResponseBody {
  text?: unknown;
  blocks?: unknown;
  response_type?: unknown;
  replace_original?: unknown;
  delete_original?: unknown;
}

export class DemoChannel {
  private readonly messages = new Map<string, ChannelMessage>();
  private readonly privates: PrivateMessage[] = [];
  private readonly modals: OpenModal[] = [];
  /** response_url key → who it answers, and the private message it came from (for replace_original). */
  private readonly responseUrls = new Map<string, { user: string; privateId: string | null }>();
  private readonly triggers = new Map<string, string>();
  private seq = 0;

  constructor(
    private readonly deps: {
      slack: FakeSlack;
      channelId: string;
      botUrl: () => string;
      signingSecret: string;
      onChange: () => void;
      now?: () => number;
    },
  ) {
    const { slack } = deps;
    slack.events.on('message', (m) => this.onMessage(m));
    slack.events.on('ephemeral', (e) => {
      this.addPrivate(e.user, e.text, e.blocks);
    });
    slack.events.on('response', (r) => this.onResponse(r.path, r.body as SlackResponseBody));
    slack.events.on('view', (v) => {
      const user = this.triggers.get(v.triggerId);
      if (!user) return;
      this.modals.push({ id: v.id, user, view: v.view, errors: {} });
      deps.onChange();
    });
  }

  snapshot(): { messages: ChannelMessage[]; privates: PrivateMessage[]; modals: OpenModal[] } {
    return { messages: [...this.messages.values()], privates: this.privates, modals: this.modals };
  }

  /** A click on a button of a channel message (by ts) or of a private message (by id). */
  async click(input: { user: string; actionId: string; ts?: string; privateId?: string }): Promise<Answer> {
    const { slack, channelId } = this.deps;
    let message: { channel: string; ts: string; blocks: unknown[] };
    if (input.privateId) {
      const found = this.privates.find((p) => p.id === input.privateId && p.user === input.user);
      if (!found) return { ok: false, status: 404, error: 'no such private message' };
      message = { channel: channelId, ts: found.id, blocks: found.blocks };
    } else {
      const found = input.ts ? slack.messages.get(input.ts) : undefined;
      if (!found) return { ok: false, status: 404, error: 'no such message' };
      message = found;
    }
    let payload: Record<string, unknown>;
    try {
      payload = blockActionsPayload({
        message,
        actionId: input.actionId,
        userId: input.user,
        responseUrl: this.responseUrl(input.user, input.privateId ?? null),
        ephemeral: input.privateId !== undefined,
      });
    } catch (err) {
      return { ok: false, status: 400, error: (err as Error).message };
    }
    const res = await postSignedSlackForm(
      this.deps.botUrl(),
      this.deps.signingSecret,
      interactionForm(payload),
    );
    await res.arrayBuffer();
    return answer(res.status);
  }

  /** `/postmortem <text>` typed in the channel. The bot's immediate answer (its ack) is shown privately. */
  async command(input: { user: string; text: string }): Promise<Answer> {
    const triggerId = `${Date.now()}.${++this.seq}.${randomBytes(8).toString('hex')}`;
    this.triggers.set(triggerId, input.user);
    const res = await postSignedSlackForm(
      this.deps.botUrl(),
      this.deps.signingSecret,
      slashCommandForm({
        text: input.text,
        userId: input.user,
        channelId: this.deps.channelId,
        responseUrl: this.responseUrl(input.user, null),
        triggerId,
      }),
    );
    const body = await res.text();
    if (res.ok && body.trim() !== '') {
      try {
        this.respond(input.user, null, JSON.parse(body) as SlackResponseBody);
      } catch {
        // Slack shows a plain-text answer as it is.
        this.addPrivate(input.user, body, []);
      }
    }
    return answer(res.status);
  }

  /** Submits an open modal with the values typed in the page (by block ID), as Slack's view_submission. */
  async submit(input: {
    user: string;
    viewId: string;
    values: Record<string, string | number | null>;
  }): Promise<Answer & { errors?: Record<string, string> }> {
    const modal = this.modals.find((m) => m.id === input.viewId && m.user === input.user);
    if (!modal) return { ok: false, status: 404, error: 'this form is no longer open' };
    const state: Record<string, Record<string, unknown>> = {};
    for (const block of (modal.view.blocks ?? []) as InputBlock[]) {
      if (block.type !== 'input' || !block.block_id || !block.element?.action_id) continue;
      const raw = input.values[block.block_id] ?? null;
      state[block.block_id] = { [block.element.action_id]: stateValue(block.element, raw) };
    }
    const res = await postSignedSlackForm(
      this.deps.botUrl(),
      this.deps.signingSecret,
      interactionForm(viewSubmissionPayload({ id: modal.id, view: modal.view }, state, input.user)),
    );
    const body = await res.text();
    if (!res.ok) return answer(res.status);
    let parsed: { response_action?: string; errors?: unknown } = {};
    try {
      if (body.trim()) parsed = JSON.parse(body) as typeof parsed;
    } catch {
      // Not a response_action: Slack closes the modal.
    }
    if (parsed.response_action === 'errors' && parsed.errors && typeof parsed.errors === 'object') {
      modal.errors = parsed.errors as Record<string, string>;
      this.deps.onChange();
      return { ok: true, status: res.status, errors: modal.errors };
    }
    this.close(input.user, modal.id);
    return answer(res.status);
  }

  close(user: string, viewId: string): void {
    const index = this.modals.findIndex((m) => m.id === viewId && m.user === user);
    if (index >= 0) this.modals.splice(index, 1);
    this.deps.onChange();
  }

  private onMessage(m: PostedMessage): void {
    const existing = this.messages.get(m.ts);
    if (existing) Object.assign(existing, { text: m.text, blocks: m.blocks, edited: true });
    else
      this.messages.set(m.ts, {
        seq: ++this.seq,
        at: this.now(),
        ts: m.ts,
        threadTs: m.threadTs ?? null,
        text: m.text,
        blocks: m.blocks,
        edited: false,
      });
    this.deps.onChange();
  }

  private onResponse(path: string, body: SlackResponseBody): void {
    const key = /^\/response\/demo\/([^/?]+)/.exec(path)?.[1];
    const target = key ? this.responseUrls.get(key) : undefined;
    if (!target) return;
    this.respond(target.user, target.privateId, body);
  }

  /** What Slack does with a response_url answer (or a command's ack): a private message, or a replacement. */
  private respond(user: string, privateId: string | null, body: SlackResponseBody): void {
    const original = privateId ? this.privates.findIndex((p) => p.id === privateId) : -1;
    if (body.delete_original === true && original >= 0) {
      this.privates.splice(original, 1);
      this.deps.onChange();
      return;
    }
    const text = typeof body.text === 'string' ? body.text : '';
    const blocks = Array.isArray(body.blocks) ? body.blocks : [];
    if (text === '' && blocks.length === 0) return;
    const previous = original >= 0 ? this.privates[original] : undefined;
    if (body.replace_original === true && previous) {
      Object.assign(previous, { text, blocks, at: this.now() });
      this.deps.onChange();
      return;
    }
    this.addPrivate(body.response_type === 'in_channel' ? '*' : user, text, blocks);
  }

  private addPrivate(user: string, text: string, blocks: unknown[]): void {
    const seq = ++this.seq;
    this.privates.push({ seq, at: this.now(), id: `private-${seq}`, user, text, blocks });
    this.deps.onChange();
  }

  private responseUrl(user: string, privateId: string | null): string {
    const key = randomBytes(12).toString('hex');
    this.responseUrls.set(key, { user, privateId });
    return `${this.deps.slack.url}/response/demo/${key}`;
  }

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }
}

function answer(status: number): Answer {
  return status >= 200 && status < 300
    ? { ok: true, status }
    : { ok: false, status, error: `the bot answered HTTP ${status}` };
}

/** One input's state as Slack reports it in view_submission (state.values[block][action]). */
function stateValue(element: NonNullable<InputBlock['element']>, raw: string | number | null): unknown {
  switch (element.type) {
    case 'datetimepicker':
      return { type: 'datetimepicker', selected_date_time: typeof raw === 'number' ? raw : null };
    case 'static_select': {
      const option = element.options?.find((o) => o.value === raw);
      return {
        type: 'static_select',
        selected_option: option ? { text: option.text, value: option.value } : null,
      };
    }
    case 'conversations_select':
      return {
        type: 'conversations_select',
        selected_conversation: typeof raw === 'string' && raw ? raw : null,
      };
    default:
      return {
        type: element.type ?? 'plain_text_input',
        value: typeof raw === 'string' && raw !== '' ? raw : null,
      };
  }
}
