import { EventEmitter } from 'node:events';
import { listen, sendJson } from './http-server.js';

export interface SlackCall {
  method: string;
  args: Record<string, unknown>;
  at: number;
}

export interface FakeUser {
  name: string;
  real_name?: string;
  display_name?: string;
  /** Their own workspace: another one means a Slack Connect user from outside. */
  team_id?: string;
  enterprise_id?: string;
  is_bot?: boolean;
  /** Multi-channel guest. */
  is_restricted?: boolean;
  /** Single-channel guest. */
  is_ultra_restricted?: boolean;
}

export interface PostedMessage {
  channel: string;
  ts: string;
  /** Set on thread replies: the parent message's ts. */
  threadTs?: string;
  text: string;
  blocks: unknown[];
}

/** What the stand-in saw happen, for anyone watching it live (the demo page). */
export interface FakeSlackEvents {
  /** A message was posted (chat.postMessage) or changed (chat.update); the object is the stored one. */
  message: [message: PostedMessage, change: 'posted' | 'updated'];
  /** chat.postEphemeral: a message only `user` sees. */
  ephemeral: [ephemeral: { channel: string; user: string; text: string; blocks: unknown[] }];
  /** A POST to a response_url (a private reply to a command or a click). */
  response: [response: { path: string; body: Record<string, unknown> }];
  /** views.open: a modal opened for the person whose trigger_id it was. */
  view: [view: { id: string; triggerId: string; view: Record<string, unknown> }];
  /** views.publish: a person's Home tab was (re)drawn. */
  home: [home: { userId: string; view: Record<string, unknown> }];
}

export type SlackFault =
  | { kind: 'http'; status: number }
  | { kind: 'ratelimit'; retryAfterS: number }
  | { kind: 'error'; error: string };

/**
 * A stand-in for the Slack Web API (https://slack.com/api/METHOD) and for response_url, answering like Slack:
 * form-encoded arguments with JSON-encoded blocks, `ok:false` errors with HTTP 200, 429 with Retry-After,
 * and Block Kit limits enforced as `invalid_blocks`.
 */
export class FakeSlack {
  readonly calls: SlackCall[] = [];
  readonly responses: { path: string; body: Record<string, unknown> }[] = [];
  readonly messages = new Map<string, PostedMessage>();
  readonly ephemerals: { channel: string; user: string; text: string; blocks: unknown[] }[] = [];
  readonly events = new EventEmitter<FakeSlackEvents>();
  /** Channels that exist and the bot can post in; others answer channel_not_found. */
  readonly channels = new Set<string>();
  /** User groups and their members; a string instead of members makes usergroups.users.list fail with it. */
  readonly userGroups = new Map<string, string[] | string>();
  readonly views: { id: string; triggerId: string; view: Record<string, unknown> }[] = [];
  /** Home tabs published (views.publish), by user, the latest each. */
  readonly homeViews = new Map<string, Record<string, unknown>>();
  /**
   * The bot token's scopes, sent in every answer's X-OAuth-Scopes header as Slack does. By default those
   * manifest.yml asks for.
   */
  scopes: string[] = [
    'chat:write',
    'chat:write.public',
    'commands',
    'channels:read',
    'groups:read',
    'users:read',
    'usergroups:read',
    'channels:history',
    'groups:history',
  ];
  /** What conversations.info says beyond "public, not archived, the bot not a member", per channel. */
  readonly channelDetails = new Map<
    string,
    { is_private?: boolean; is_archived?: boolean; is_member?: boolean }
  >();
  /** Channel names for conversations.list (name → ID). */
  readonly channelNames = new Map<string, string>();
  /** Channel history for conversations.history; a string makes the call fail with that error. */
  readonly history = new Map<string, Record<string, unknown>[] | string>();
  /**
   * People Slack knows with more than the defaults. Anyone else is a full member of the workspace T0001
   * (whose handle is their ID), as every user ID a test clicks with would be in a real workspace.
   */
  readonly users = new Map<string, FakeUser>();
  /** Page size Slack uses for conversations.list / conversations.history (small to exercise pagination). */
  pageSize = 200;
  /**
   * Slack's per-channel limit for posting (about 1 per second, short bursts tolerated): when set, more than
   * `burst` chat.postMessage/chat.update calls to one channel within a second answer 429 with Retry-After.
   */
  channelLimit: { burst: number } | undefined;
  private readonly channelCalls = new Map<string, number[]>();
  rateLimited = 0;
  /** Until this time (ms since epoch) every Web API call answers HTTP 503. */
  unavailableUntil = 0;
  private readonly faults: { method: string; fault: SlackFault }[] = [];
  private seq = 0;
  url = '';
  private closeServer: () => Promise<void> = async () => {};

  constructor(
    readonly token = 'xoxb-test-token',
    channels: string[] = ['CDEFAULT01', 'CPAYMENTS1'],
  ) {
    for (const c of channels) this.channels.add(c);
  }

  get apiUrl(): string {
    return `${this.url}/api/`;
  }

  async start(): Promise<this> {
    const { url, close } = await listen((req, body, res) => {
      const path = req.url ?? '/';
      if (path.startsWith('/response/')) {
        const response = { path, body: JSON.parse(body.toString('utf8')) as Record<string, unknown> };
        this.responses.push(response);
        sendJson(res, 200, { ok: true });
        this.events.emit('response', response);
        return;
      }
      const method = path.replace(/^\/api\//, '').split('?')[0] ?? '';
      if (req.headers.authorization !== `Bearer ${this.token}`) {
        sendJson(res, 200, { ok: false, error: 'invalid_auth' });
        return;
      }
      const args = parseArgs(req.headers['content-type'], body);
      if (Date.now() < this.unavailableUntil) {
        this.calls.push({ method: `${method}!503`, args, at: Date.now() });
        return sendJson(res, 503, { ok: false, error: 'service_unavailable' });
      }
      const faultIndex = this.faults.findIndex((f) => f.method === method || f.method === '*');
      if (faultIndex >= 0) {
        const [{ fault }] = this.faults.splice(faultIndex, 1) as [{ method: string; fault: SlackFault }];
        this.calls.push({ method: `${method}!fault`, args, at: Date.now() });
        if (fault.kind === 'http')
          return sendJson(res, fault.status, { ok: false, error: 'service_unavailable' });
        if (fault.kind === 'ratelimit')
          return sendJson(
            res,
            429,
            { ok: false, error: 'ratelimited' },
            { 'retry-after': String(fault.retryAfterS) },
          );
        return sendJson(res, 200, { ok: false, error: fault.error });
      }
      if (this.channelLimit && (method === 'chat.postMessage' || method === 'chat.update')) {
        const now = Date.now();
        const recent = (this.channelCalls.get(String(args.channel)) ?? []).filter((t) => t > now - 1000);
        if (recent.length >= this.channelLimit.burst) {
          this.rateLimited++;
          this.calls.push({ method: `${method}!429`, args, at: now });
          return sendJson(res, 429, { ok: false, error: 'ratelimited' }, { 'retry-after': '1' });
        }
        recent.push(now);
        this.channelCalls.set(String(args.channel), recent);
      }
      this.calls.push({ method, args, at: Date.now() });
      sendJson(res, 200, this.answer(method, args), { 'x-oauth-scopes': this.scopes.join(',') });
    });
    this.url = url;
    this.closeServer = close;
    return this;
  }

  close(): Promise<void> {
    return this.closeServer();
  }

  /** The next call of `method` ('*' for any) fails this way. */
  failNext(method: string, fault: SlackFault, times = 1): void {
    for (let i = 0; i < times; i++) this.faults.push({ method, fault });
  }

  callsOf(method: string): SlackCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  private answer(method: string, args: Record<string, unknown>): Record<string, unknown> {
    switch (method) {
      case 'auth.test':
        return {
          ok: true,
          user_id: 'UBOT0001',
          bot_id: 'BBOT0001',
          team_id: 'T0001',
          user: 'postmortem-bot',
        };
      case 'chat.postMessage': {
        const channel = String(args.channel ?? '');
        if (!this.channels.has(channel)) return { ok: false, error: 'channel_not_found' };
        const problem = blockKitProblem(args.blocks);
        if (problem) return { ok: false, error: 'invalid_blocks', errors: [problem] };
        const ts = `1700000000.${String(++this.seq).padStart(6, '0')}`;
        const message: PostedMessage = {
          channel,
          ts,
          ...(args.thread_ts ? { threadTs: String(args.thread_ts) } : {}),
          text: String(args.text ?? ''),
          blocks: (args.blocks as unknown[]) ?? [],
        };
        this.messages.set(ts, message);
        this.events.emit('message', message, 'posted');
        return { ok: true, channel, ts, message: { text: args.text } };
      }
      case 'chat.update': {
        const ts = String(args.ts ?? '');
        const existing = this.messages.get(ts);
        if (!existing || existing.channel !== args.channel) return { ok: false, error: 'message_not_found' };
        const problem = blockKitProblem(args.blocks);
        if (problem) return { ok: false, error: 'invalid_blocks', errors: [problem] };
        existing.text = String(args.text ?? '');
        existing.blocks = (args.blocks as unknown[]) ?? [];
        this.events.emit('message', existing, 'updated');
        return { ok: true, channel: existing.channel, ts };
      }
      case 'chat.postEphemeral': {
        const channel = String(args.channel ?? '');
        if (!this.channels.has(channel)) return { ok: false, error: 'channel_not_found' };
        const ephemeral = {
          channel,
          user: String(args.user ?? ''),
          text: String(args.text ?? ''),
          blocks: (args.blocks as unknown[]) ?? [],
        };
        this.ephemerals.push(ephemeral);
        this.events.emit('ephemeral', ephemeral);
        return { ok: true, message_ts: `1700000001.${String(++this.seq).padStart(6, '0')}` };
      }
      case 'views.open': {
        const view = (typeof args.view === 'string' ? JSON.parse(args.view) : args.view) as Record<
          string,
          unknown
        >;
        if (!args.trigger_id) return { ok: false, error: 'invalid_trigger_id' };
        const problem = viewProblem(view);
        if (problem)
          return { ok: false, error: 'invalid_arguments', response_metadata: { messages: [problem] } };
        const id = `V${String(++this.seq).padStart(8, '0')}`;
        const opened = { id, triggerId: String(args.trigger_id), view };
        this.views.push(opened);
        this.events.emit('view', opened);
        return { ok: true, view: { ...view, id } };
      }
      case 'views.update': {
        const view = (typeof args.view === 'string' ? JSON.parse(args.view) : args.view) as Record<
          string,
          unknown
        >;
        const opened = this.views.find((v) => v.id === args.view_id);
        if (!opened) return { ok: false, error: 'not_found' };
        const problem = viewProblem(view);
        if (problem)
          return { ok: false, error: 'invalid_arguments', response_metadata: { messages: [problem] } };
        opened.view = view;
        this.events.emit('view', opened);
        return { ok: true, view: { ...view, id: opened.id } };
      }
      case 'views.publish': {
        const view = (typeof args.view === 'string' ? JSON.parse(args.view) : args.view) as
          | Record<string, unknown>
          | undefined;
        const userId = String(args.user_id ?? '');
        if (!/^[UW][A-Z0-9]+$/.test(userId)) return { ok: false, error: 'invalid_user' };
        if (view?.type !== 'home') return { ok: false, error: 'invalid_arguments' };
        if (!Array.isArray(view.blocks) || view.blocks.length > 100)
          return { ok: false, error: 'invalid_arguments' };
        this.homeViews.set(userId, view);
        this.events.emit('home', { userId, view });
        return { ok: true, view: { ...view, id: `V${String(++this.seq).padStart(8, '0')}` } };
      }
      case 'conversations.info': {
        const channel = String(args.channel ?? '');
        if (!this.channels.has(channel)) return { ok: false, error: 'channel_not_found' };
        const d = this.channelDetails.get(channel) ?? {};
        const name =
          [...this.channelNames.entries()].find(([, id]) => id === channel)?.[0] ?? channel.toLowerCase();
        return {
          ok: true,
          channel: {
            id: channel,
            name,
            is_channel: !d.is_private,
            is_private: d.is_private ?? false,
            is_archived: d.is_archived ?? false,
            is_member: d.is_member ?? false,
          },
        };
      }
      case 'conversations.list': {
        const all = [...this.channelNames.entries()].map(([name, id]) => ({ id, name, is_archived: false }));
        const start = Number(args.cursor ?? 0);
        const page = all.slice(start, start + Math.min(this.pageSize, Number(args.limit ?? 100)));
        const next = start + page.length < all.length ? String(start + page.length) : '';
        return { ok: true, channels: page, response_metadata: { next_cursor: next } };
      }
      case 'conversations.history': {
        const channel = String(args.channel ?? '');
        const h = this.history.get(channel);
        if (typeof h === 'string')
          return { ok: false, error: h, ...(h === 'missing_scope' ? { needed: 'channels:history' } : {}) };
        const oldest = Number(args.oldest ?? 0);
        const latest = Number(args.latest ?? Number.POSITIVE_INFINITY);
        // Newest first, like Slack.
        const inWindow = (h ?? [])
          .filter((m) => Number(m.ts) >= oldest && Number(m.ts) <= latest)
          .sort((a, b) => Number(b.ts) - Number(a.ts));
        const start = Number(args.cursor ?? 0);
        const page = inWindow.slice(start, start + Math.min(this.pageSize, Number(args.limit ?? 100)));
        const more = start + page.length < inWindow.length;
        return {
          ok: true,
          messages: page,
          has_more: more,
          response_metadata: { next_cursor: more ? String(start + page.length) : '' },
        };
      }
      case 'users.info': {
        const id = String(args.user ?? '');
        if (!/^[UW][A-Z0-9]+$/.test(id)) return { ok: false, error: 'user_not_found' };
        const u = this.users.get(id) ?? { name: id };
        return {
          ok: true,
          user: {
            id,
            team_id: u.team_id ?? 'T0001',
            name: u.name,
            real_name: u.real_name,
            deleted: false,
            is_bot: u.is_bot ?? false,
            is_restricted: u.is_restricted ?? false,
            is_ultra_restricted: u.is_ultra_restricted ?? false,
            ...(u.enterprise_id
              ? { enterprise_user: { id, enterprise_id: u.enterprise_id, teams: [] } }
              : {}),
            profile: { display_name: u.display_name ?? '' },
          },
        };
      }
      case 'usergroups.users.list': {
        const group = this.userGroups.get(String(args.usergroup ?? ''));
        if (group === undefined) return { ok: false, error: 'no_such_subteam' };
        if (typeof group === 'string') return { ok: false, error: group };
        return { ok: true, users: group };
      }
      default:
        return { ok: false, error: 'unknown_method' };
    }
  }
}

function parseArgs(contentType: string | undefined, body: Buffer): Record<string, unknown> {
  const text = body.toString('utf8');
  if (contentType?.includes('application/json')) return JSON.parse(text || '{}') as Record<string, unknown>;
  const args: Record<string, unknown> = {};
  for (const [k, v] of new URLSearchParams(text)) {
    args[k] = k === 'blocks' || k === 'attachments' || k === 'view' ? JSON.parse(v) : v;
  }
  return args;
}

type TextObject = { text?: unknown };
/** The parts of a block the limits below look at; anything else passes through unchecked. */
interface CheckedBlock {
  type?: string;
  block_id?: unknown;
  text?: TextObject;
  fields?: TextObject[];
  elements: {
    type?: string;
    text?: string | TextObject;
    value?: unknown;
    action_id?: unknown;
    options?: { text?: TextObject; description?: TextObject; value?: unknown }[];
  }[];
}

/** The limits Slack enforces on a modal: its blocks (100 at most), title, buttons' text and metadata. */
export function viewProblem(view: Record<string, unknown>): string | undefined {
  const text = (t: unknown) => String((t as TextObject | undefined)?.text ?? '');
  if (text(view.title).length > 24) return 'title over 24';
  if (view.submit && text(view.submit).length > 24) return 'submit over 24';
  if (view.close && text(view.close).length > 24) return 'close over 24';
  if (typeof view.private_metadata === 'string' && view.private_metadata.length > 3000)
    return 'private_metadata over 3000';
  return blockKitProblem(view.blocks, 100);
}

/** The Block Kit limits Slack enforces on messages (50 blocks) and modals (100) (docs.slack.dev/reference/block-kit). */
export function blockKitProblem(blocks: unknown, maxBlocks = 50): string | undefined {
  if (blocks === undefined) return undefined;
  if (!Array.isArray(blocks)) return 'blocks must be an array';
  if (blocks.length > maxBlocks) return `more than ${maxBlocks} blocks`;
  for (const [i, b] of blocks.entries()) {
    const block = b as CheckedBlock;
    if (block.block_id && String(block.block_id).length > 255) return `block ${i}: block_id too long`;
    if (block.type === 'section') {
      if (block.text && String(block.text.text).length > 3000) return `block ${i}: section text over 3000`;
      if (block.fields) {
        if (block.fields.length > 10) return `block ${i}: more than 10 fields`;
        for (const f of block.fields) if (String(f.text).length > 2000) return `block ${i}: field over 2000`;
      }
      if (!block.text && !block.fields) return `block ${i}: section needs text or fields`;
    }
    if (block.type === 'header' && String(block.text?.text).length > 150)
      return `block ${i}: header over 150`;
    if (block.type === 'context') {
      if (block.elements.length > 10) return `block ${i}: more than 10 context elements`;
      for (const e of block.elements)
        if (String(e.text).length > 3000) return `block ${i}: context text over 3000`;
    }
    if (block.type === 'actions') {
      if (block.elements.length > 25) return `block ${i}: more than 25 elements`;
      for (const e of block.elements) {
        if (e.type === 'checkboxes') {
          const options = e.options ?? [];
          if (options.length < 1 || options.length > 10) return `block ${i}: checkboxes need 1 to 10 options`;
          for (const o of options) {
            if (String(o.text?.text).length > 75) return `block ${i}: option text over 75`;
            if (o.description && String(o.description.text).length > 75)
              return `block ${i}: option description over 75`;
            if (String(o.value).length > 150) return `block ${i}: option value over 150`;
          }
          continue;
        }
        if (String((e.text as TextObject | undefined)?.text).length > 75)
          return `block ${i}: button text over 75`;
        if (e.value && String(e.value).length > 2000) return `block ${i}: button value over 2000`;
        if (String(e.action_id).length > 255) return `block ${i}: action_id over 255`;
      }
    }
  }
  return undefined;
}
