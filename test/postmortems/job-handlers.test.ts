import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AppError, RetryableError } from '../../src/errors.js';
import { createLogger } from '../../src/logging.js';
import { DomainError } from '../../src/postmortems/errors.js';
import { EventProcessor, newRun } from '../../src/postmortems/intake.js';
import { jobHandlers } from '../../src/postmortems/job-handlers.js';
import { Lifecycle } from '../../src/postmortems/lifecycle.js';
import { MessageWorker } from '../../src/postmortems/message-worker.js';
import type { PostmortemRun } from '../../src/postmortems/model.js';
import { SessionWorker } from '../../src/postmortems/session-worker.js';
import type { SqliteStore } from '../../src/store/sqlite.js';
import type { Job, JobKind } from '../../src/store/store.js';
import { anIncident } from '../helpers/builders.js';
import { FakeEvidence, FakeIncidentNotes, FakeRunChannel, FakeSessionApi } from '../helpers/fake-ports.js';
import { Clock, closeTempStores, takeJobs, tempStore } from '../helpers/temp-store.js';

const logger = createLogger('silent');
const policy = {
  autoStartPriorities: ['P1'],
  earlyStartPriorities: [],
  neverPriorities: [],
  defaultChannel: 'C_DEFAULT',
  routing: { services: {} },
};

let clock: Clock;
let store: SqliteStore;
let lifecycle: Lifecycle;
let sessions: FakeSessionApi;
let channel: FakeRunChannel;
let notes: FakeIncidentNotes;
let handlers: ReturnType<typeof jobHandlers>;

beforeEach(() => {
  clock = new Clock();
  store = tempStore(clock);
  lifecycle = new Lifecycle(store);
  sessions = new FakeSessionApi(clock.now);
  channel = new FakeRunChannel();
  notes = new FakeIncidentNotes();
  handlers = jobHandlers({
    store,
    queue: lifecycle,
    logger,
    notes,
    now: clock.now,
    retentionMs: 90 * 86_400_000,
    events: new EventProcessor({
      store,
      lifecycle,
      policy,
      readEvent: (e) => ({ kind: 'no_action', type: e.type }),
      logger,
      now: clock.now,
    }),
    sessions: new SessionWorker({
      store,
      lifecycle,
      sessions,
      evidence: new FakeEvidence(),
      policy,
      session: { playbookId: undefined, knowledgeIds: [], repos: [], maxAcuLimit: undefined },
      prompt: { template: undefined, destination: 'docs/postmortems/' },
      logger,
      now: clock.now,
      giveUpAfterMs: 3_600_000,
      reconcileWindowMs: 300_000,
    }),
    messages: new MessageWorker({ store, channel, defaultChannel: 'C_DEFAULT', logger }),
  });
});
afterEach(closeTempStores);

/** A run opened for a P1 (starting), with its jobs taken off the queue. */
async function aStartingRun(): Promise<PostmortemRun> {
  const run = await lifecycle.open(newRun(anIncident({ priority: 'P1' }), 1, 'auto', 'C1'));
  if (!run) throw new Error('run not opened');
  await takeJobs(store);
  return run;
}

const jobFor = (kind: JobKind, payload: Record<string, unknown>, attempts = 1): Job => ({
  id: 41,
  failures: 0,
  kind,
  lane: 'test',
  payload,
  attempts,
  createdAt: clock.ms,
});

/** What the runner receives when the handler fails (the runner tells RetryableError from the rest). */
const failureOf = (kind: JobKind, payload: Record<string, unknown>, attempts = 1): Promise<unknown> =>
  handlers[kind](jobFor(kind, payload, attempts)).then(
    () => undefined,
    (err: unknown) => err,
  );

describe('jobHandlers: domain failures reach the runner as its retry decisions', () => {
  it('an "at" code (a reserved Slack slot) is a RetryableError for exactly that time', async () => {
    const run = await aStartingRun();
    channel.failNext('chat_paced', 1234);
    const err = await failureOf('sync_message', { runId: run.id });
    expect(err).toBeInstanceOf(RetryableError);
    expect(err).toMatchObject({ code: 'chat_paced', exact: true, retryAfterMs: 1234 });
    expect((err as RetryableError).cause).toBeInstanceOf(DomainError);
  });

  it('a thread reply before its message is posted waits a planned second, exactly', async () => {
    const run = await aStartingRun();
    const err = await failureOf('thread_reply', { runId: run.id, reply: 'finished' });
    expect(err).toBeInstanceOf(RetryableError);
    expect(err).toMatchObject({ code: 'message_pending', exact: true, retryAfterMs: 1000 });
  });

  it('a routed channel that refuses the bot is retried at once, rerouted to the default channel', async () => {
    const run = await aStartingRun();
    channel.unusable.add('C1');
    const err = await failureOf('sync_message', { runId: run.id });
    expect(err).toMatchObject({ code: 'message_rerouted', exact: true, retryAfterMs: 0 });
    expect((await store.getRun(run.id))?.channel).toBe('C_DEFAULT');
  });

  it('a backoff code is a RetryableError with the growing backoff, keeping the wait the other side asked', async () => {
    const run = await aStartingRun();
    channel.failNext('chat_rate_limited', 30_000);
    const err = await failureOf('sync_message', { runId: run.id });
    expect(err).toBeInstanceOf(RetryableError);
    expect(err).toMatchObject({ code: 'chat_rate_limited', exact: false, retryAfterMs: 30_000 });
  });

  it('a Devin outage during a start is retried with backoff; the lifecycle wait after it is exact', async () => {
    const run = await aStartingRun();
    sessions.fail('create', 'session_api_unavailable');
    expect(await failureOf('start_session', { runId: run.id })).toMatchObject({
      code: 'session_api_unavailable',
      exact: false,
    });
    const next = await failureOf('start_session', { runId: run.id }, 2);
    expect(next).toBeInstanceOf(RetryableError);
    expect(next).toMatchObject({ code: 'create_unconfirmed', exact: true, retryAfterMs: 30_000 });
  });

  it.each([
    ['chat_refused', 'sync_message'],
    ['chat_channel_unusable', 'sync_message'],
  ] as const)(
    'a give_up code (%s) is a permanent failure: an AppError, not retryable',
    async (code, kind) => {
      const run = await aStartingRun();
      await store.updateRun(run.id, { channel: 'C_DEFAULT' });
      channel.failNext(code);
      const err = await failureOf(kind, { runId: run.id });
      expect(err).toBeInstanceOf(AppError);
      expect(err).not.toBeInstanceOf(RetryableError);
      expect(err).toMatchObject({ code });
    },
  );

  it('PagerDuty refusing a note is permanent; PagerDuty rate limiting it is retried', async () => {
    const run = await aStartingRun();
    await store.updateRun(run.id, { pullRequests: ['https://github.com/acme/pm/pull/1'] });
    notes.failNext('incident_source_forbidden');
    const refused = await failureOf('pagerduty_note', { runId: run.id });
    expect(refused).toBeInstanceOf(DomainError);
    expect(refused).not.toBeInstanceOf(RetryableError);
    expect(refused).toMatchObject({ code: 'incident_source_forbidden' });

    notes.failNext('incident_source_rate_limited');
    expect(await failureOf('pagerduty_note', { runId: run.id })).toBeInstanceOf(RetryableError);

    expect(await failureOf('pagerduty_note', { runId: run.id })).toBeUndefined();
    expect(notes.notes).toEqual([
      { incidentId: 'Q1', content: 'Postmortem written by Devin: https://github.com/acme/pm/pull/1' },
    ]);
  });

  it('an error that is not a domain failure reaches the runner unchanged (it treats it as a bug)', async () => {
    const run = await aStartingRun();
    const bug = new TypeError('undefined is not a function');
    channel.postRunMessage = async () => {
      throw bug;
    };
    expect(await failureOf('sync_message', { runId: run.id })).toBe(bug);
  });

  it('a handler that succeeds resolves, having done its work', async () => {
    const run = await aStartingRun();
    expect(await failureOf('sync_message', { runId: run.id })).toBeUndefined();
    expect(channel.posts.map((p) => [p.channel, p.run.id, p.callKey])).toEqual([['C1', run.id, 41]]);
    expect((await store.getRun(run.id))?.slackTs).toBe(channel.posts[0]?.ts);
  });
});
