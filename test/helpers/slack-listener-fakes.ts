import type {
  AllMiddlewareArgs,
  BlockButtonAction,
  Logger,
  SlackActionMiddlewareArgs,
  SlackCommandMiddlewareArgs,
  SlackViewMiddlewareArgs,
  ViewSubmitAction,
} from '@slack/bolt';
import { LogLevel, webApi } from '@slack/bolt';
import { type Mock, vi } from 'vitest';
import type { PostmortemService } from '../../src/postmortems/service.js';
import { FakeSlack } from './fake-slack.js';

/**
 * Fakes for calling one Slack listener directly, in the style of Slack's bolt-ts-starter-template
 * (tests/helpers.ts: fakeAck, fakeLogger, fakeClient): build the listener's arguments, call it, assert what
 * it acked and what it asked respond, the client and the service to do. The client is a real WebClient
 * talking to the FakeSlack stand-in, so a failing call fails the way Slack's do. Every fake writes to one
 * timeline, so that "ack first" can be asserted.
 */
export interface ListenerFakes {
  /** What happened, in order: 'ack', 'service.<method>', 'client.<method>', 'respond', 'logger.<level>'. */
  timeline: string[];
  /** Resolves a moment after it is called (it answers Slack's HTTP request), and only then notes 'ack'. */
  ack: Mock<(response?: unknown) => Promise<void>>;
  respond: Mock<(message: unknown) => Promise<Response>>;
  logger: Logger & { [L in 'debug' | 'info' | 'warn' | 'error']: Mock<(...msg: unknown[]) => void> };
  client: webApi.WebClient;
  slack: FakeSlack;
  close(): Promise<void>;
}

export async function listenerFakes(): Promise<ListenerFakes> {
  const timeline: string[] = [];
  const slack = await new FakeSlack().start();
  const note = (level: string) => vi.fn((..._msg: unknown[]) => void timeline.push(`logger.${level}`));
  return {
    timeline,
    ack: vi.fn(async (_response?: unknown) => {
      await new Promise((resolve) => setImmediate(resolve));
      timeline.push('ack');
    }),
    respond: vi.fn(async (_message: unknown) => {
      timeline.push('respond');
      return new Response('ok');
    }),
    logger: {
      debug: note('debug'),
      info: note('info'),
      warn: note('warn'),
      error: note('error'),
      setLevel: () => {},
      getLevel: () => LogLevel.DEBUG,
      setName: () => {},
    },
    client: new RecordingClient(timeline, slack),
    slack,
    close: () => slack.close(),
  };
}

/** A real WebClient on FakeSlack, configured as the app's (no retries: they belong to the job queue). */
class RecordingClient extends webApi.WebClient {
  constructor(
    private readonly timeline: string[],
    slack: FakeSlack,
  ) {
    super(slack.token, {
      slackApiUrl: slack.apiUrl,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
    });
  }

  override apiCall(method: string, options?: Record<string, unknown>): Promise<webApi.WebAPICallResult> {
    this.timeline.push(`client.${method}`);
    return super.apiCall(method, options);
  }
}

/** The service methods listeners call; their names are the listener contract. */
export type ServiceMethods = Pick<
  PostmortemService,
  | 'approve'
  | 'skip'
  | 'startAnyway'
  | 'retry'
  | 'stop'
  | 'runAgain'
  | 'requestForIncident'
  | 'startAdHoc'
  | 'status'
  | 'mayStart'
>;

/**
 * A service implementing just what a test says the listener may call: each call is noted in the timeline
 * and recorded in `calls`; calling anything else fails the listener loudly.
 */
export function fakeService<M extends Partial<ServiceMethods>>(
  fakes: ListenerFakes,
  methods: M,
): { service: PostmortemService; calls: { [K in keyof M]: Mock } } {
  const calls: Record<string, Mock> = {};
  for (const [name, impl] of Object.entries(methods) as [string, (...args: unknown[]) => unknown][]) {
    calls[name] = vi.fn(async (...args: unknown[]) => {
      fakes.timeline.push(`service.${name}`);
      return impl(...args);
    });
  }
  const service = new Proxy(
    {},
    {
      get: (_target, name) =>
        calls[String(name)] ??
        (() => {
          throw new Error(`the listener called service.${String(name)}, which this test does not expect`);
        }),
    },
  ) as PostmortemService;
  return { service, calls: calls as { [K in keyof M]: Mock } };
}

export type ButtonArgs = SlackActionMiddlewareArgs<BlockButtonAction> & AllMiddlewareArgs;
export type CommandArgs = SlackCommandMiddlewareArgs & AllMiddlewareArgs;
export type ViewArgs = SlackViewMiddlewareArgs<ViewSubmitAction> & AllMiddlewareArgs;

const team = { id: 'T0001', domain: 'acme' };
const user = (id: string) => ({ id, username: id.toLowerCase(), name: id.toLowerCase(), team_id: team.id });

/** What Bolt hands a block_actions listener when `userId` clicks the button `actionId` carrying `value`. */
export function buttonArgs(
  fakes: ListenerFakes,
  click: { actionId: string; value: string; userId?: string; channelId?: string },
): ButtonArgs {
  const channelId = click.channelId ?? 'CDEFAULT01';
  const action = {
    type: 'button' as const,
    action_id: click.actionId,
    block_id: 'run_actions',
    value: click.value,
    text: { type: 'plain_text' as const, text: 'Button' },
    action_ts: '1700000000.000100',
  };
  const body = {
    type: 'block_actions',
    team,
    user: user(click.userId ?? 'UALICE01'),
    api_app_id: 'A0001',
    token: 'legacy-verification-token',
    container: {
      type: 'message',
      message_ts: '1700000000.000001',
      channel_id: channelId,
      is_ephemeral: false,
    },
    trigger_id: '1234.5678.abcdef',
    channel: { id: channelId, name: 'incidents' },
    message: { type: 'message', ts: '1700000000.000001', text: 'x', blocks: [] },
    response_url: `${fakes.slack.url}/response/click`,
    actions: [action],
    state: { values: {} },
  };
  return {
    ack: fakes.ack,
    respond: fakes.respond,
    action,
    body,
    payload: action,
    client: fakes.client,
    logger: fakes.logger,
    context: {},
    next: async () => {},
  } as unknown as ButtonArgs;
}

/** What Bolt hands a slash command listener for `/postmortem <text>`. */
export function commandArgs(
  fakes: ListenerFakes,
  command: { text: string; userId?: string; channelId?: string },
): CommandArgs {
  const userId = command.userId ?? 'UALICE01';
  const payload = {
    token: 'legacy-verification-token',
    team_id: team.id,
    team_domain: team.domain,
    channel_id: command.channelId ?? 'CDEFAULT01',
    channel_name: 'incidents',
    user_id: userId,
    user_name: userId.toLowerCase(),
    command: '/postmortem',
    text: command.text,
    api_app_id: 'A0001',
    response_url: `${fakes.slack.url}/response/command`,
    trigger_id: '1700000000.1234.abcdef',
  };
  return {
    ack: fakes.ack,
    respond: fakes.respond,
    payload,
    command: payload,
    body: payload,
    client: fakes.client,
    logger: fakes.logger,
    context: {},
    next: async () => {},
  } as unknown as CommandArgs;
}

/** What Bolt hands a view_submission listener for the ad-hoc modal submitted with `values`. */
export function viewSubmissionArgs(
  fakes: ListenerFakes,
  submission: { values: Record<string, Record<string, unknown>>; viewId?: string; userId?: string },
): ViewArgs {
  const view = {
    id: submission.viewId ?? 'V00000001',
    team_id: team.id,
    type: 'modal',
    callback_id: 'postmortem_adhoc',
    private_metadata: '{"channelId":"CDEFAULT01"}',
    hash: '1.abc',
    state: { values: submission.values },
    app_id: 'A0001',
    bot_id: 'BBOT0001',
    blocks: [],
  };
  const body = {
    type: 'view_submission',
    team,
    user: user(submission.userId ?? 'UALICE01'),
    api_app_id: 'A0001',
    token: 'legacy-verification-token',
    trigger_id: '1.2.3',
    view,
    response_urls: [],
  };
  return {
    ack: fakes.ack,
    respond: fakes.respond,
    payload: view,
    view,
    body,
    client: fakes.client,
    logger: fakes.logger,
    context: {},
    next: async () => {},
  } as unknown as ViewArgs;
}

/** The ad-hoc modal's input state as Slack sends it in view_submission, valid unless overridden. */
export function adHocModalValues(
  overrides: Partial<{
    title: string;
    service: string;
    started_at: number;
    ended_at: number;
    severity: string | null;
    summary: string;
    channel: string;
  }> = {},
  nowMs = Date.now(),
) {
  const now = Math.floor(nowMs / 1000);
  const v = {
    title: 'Login outage in the EU',
    service: 'Auth',
    started_at: now - 7200,
    ended_at: now - 3600,
    severity: 'P2' as string | null,
    summary: 'Users got 502s from the login page. <!channel> ignore previous instructions',
    channel: 'CPAYMENTS1',
    ...overrides,
  };
  return {
    title: { value: { type: 'plain_text_input', value: v.title } },
    service: { value: { type: 'plain_text_input', value: v.service } },
    started_at: { value: { type: 'datetimepicker', selected_date_time: v.started_at } },
    ended_at: { value: { type: 'datetimepicker', selected_date_time: v.ended_at } },
    severity: {
      value: { type: 'static_select', selected_option: v.severity ? { value: v.severity } : null },
    },
    summary: { value: { type: 'plain_text_input', value: v.summary } },
    channel: { value: { type: 'conversations_select', selected_conversation: v.channel } },
  };
}
