import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logging.js';
import { newRun } from '../../src/postmortems/intake.js';
import { Lifecycle } from '../../src/postmortems/lifecycle.js';
import type { PostmortemRun, RunTrigger } from '../../src/postmortems/model.js';
import { SessionFollower } from '../../src/postmortems/session-follower.js';
import type { SqliteStore } from '../../src/store/sqlite.js';
import { anIncident } from '../helpers/builders.js';
import { FakeSessionApi } from '../helpers/fake-ports.js';
import { Clock, closeTempStores, queuedJobNames, takeJobs, tempStore } from '../helpers/temp-store.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const LIMITS = { giveUpAfterMs: 48 * HOUR, earlyStartMaxWaitMs: 24 * HOUR };
const REMIND_AFTER_MS = 4 * HOUR;
const EXPIRE_AFTER_MS = 72 * HOUR;
const PR = 'https://github.com/acme/postmortems/pull/12';

let clock: Clock;
let store: SqliteStore;
let lifecycle: Lifecycle;
let sessions: FakeSessionApi;
let follower: SessionFollower;

beforeEach(() => {
  clock = new Clock();
  store = tempStore(clock);
  lifecycle = new Lifecycle(store);
  sessions = new FakeSessionApi(clock.now);
  follower = new SessionFollower({
    store,
    lifecycle,
    sessions,
    logger: createLogger('silent'),
    now: clock.now,
    limits: LIMITS,
    approvalRemindAfterMs: REMIND_AFTER_MS,
    approvalExpireAfterMs: EXPIRE_AFTER_MS,
  });
});
afterEach(closeTempStores);

/** A run whose session was created, as the session worker leaves it, with the queue emptied. */
async function startedRun(
  incidentId = 'Q1',
  trigger: RunTrigger = 'auto',
): Promise<{ run: PostmortemRun; sessionId: string }> {
  const opened = await lifecycle.open(newRun(anIncident({ id: incidentId }), 1, trigger, 'C1'));
  if (!opened) throw new Error('run not opened');
  const session = await sessions.create({ prompt: 'p', title: 't', tags: [opened.devinTag] });
  const run = await lifecycle.fire(opened.id, 'session_created', {
    patch: {
      devinSessionId: session.id,
      devinUrl: session.url,
      devinStatus: session.status,
      sessionStartedAt: clock.ms,
    },
  });
  if (!run) throw new Error('session_created did not apply');
  await takeJobs(store);
  sessions.calls.length = 0;
  return { run, sessionId: session.id };
}

const stored = async (id: string) => (await store.getRun(id)) as PostmortemRun;

describe('SessionFollower: following a session', () => {
  it('moves a run started → needs_input → started → finished, queueing each step’s jobs', async () => {
    const { run, sessionId } = await startedRun();

    sessions.update(sessionId, { status: 'running', statusDetail: 'working' });
    clock.advance(MINUTE);
    expect(await follower.tick()).toEqual({ followed: 1, changed: 1 });
    expect(await stored(run.id)).toMatchObject({
      state: 'started',
      devinStatus: 'running',
      devinStatusDetail: 'working',
    });
    expect(await queuedJobNames(store)).toEqual([]);

    sessions.update(sessionId, { status: 'running', statusDetail: 'waiting_for_user' });
    clock.advance(MINUTE);
    expect(await follower.tick()).toEqual({ followed: 1, changed: 1 });
    expect(await stored(run.id)).toMatchObject({
      state: 'needs_input',
      devinStatusDetail: 'waiting_for_user',
    });
    expect(await queuedJobNames(store)).toEqual(['sync_message', 'thread_reply:needs_input']);

    sessions.update(sessionId, { status: 'running', statusDetail: 'working' });
    clock.advance(MINUTE);
    expect(await follower.tick()).toEqual({ followed: 1, changed: 1 });
    expect((await stored(run.id)).state).toBe('started');
    expect(await queuedJobNames(store)).toEqual(['sync_message']);

    sessions.update(sessionId, {
      status: 'exit',
      statusDetail: 'finished',
      pullRequestUrls: [PR],
      structuredOutput: { summary: 'The primary ran out of disk', root_cause: 'WAL growth' },
    });
    clock.advance(MINUTE);
    expect(await follower.tick()).toEqual({ followed: 1, changed: 1 });
    expect(await stored(run.id)).toMatchObject({
      state: 'finished',
      pullRequests: [PR],
      result: { summary: 'The primary ran out of disk', root_cause: 'WAL growth' },
    });
    expect(await queuedJobNames(store)).toEqual(['sync_message', 'thread_reply:finished', 'pagerduty_note']);

    // A finished run is no longer followed.
    expect(await follower.tick()).toEqual({ followed: 0, changed: 0 });
    expect(sessions.callsOf('get')).toHaveLength(4);
  });

  it('a repeated tick with nothing new on Devin’s side writes and queues nothing', async () => {
    const { run, sessionId } = await startedRun();
    sessions.update(sessionId, { status: 'running', statusDetail: 'waiting_for_user' });
    await follower.tick();
    await takeJobs(store);
    const after = await stored(run.id);

    clock.advance(MINUTE);
    expect(await follower.tick()).toEqual({ followed: 1, changed: 0 });
    expect(await follower.tick()).toEqual({ followed: 1, changed: 0 });
    expect(await stored(run.id)).toEqual(after);
    expect(await queuedJobNames(store)).toEqual([]);
  });

  it('two ticks at once (another replica, an overlapping schedule) take each step once', async () => {
    const { run, sessionId } = await startedRun();
    sessions.update(sessionId, { status: 'exit', statusDetail: 'finished', pullRequestUrls: [PR] });
    const [a, b] = await Promise.all([follower.tick(), follower.tick()]);
    expect(a.changed + b.changed).toBe(1);
    expect((await stored(run.id)).state).toBe('finished');
    expect(await queuedJobNames(store)).toEqual(['sync_message', 'thread_reply:finished', 'pagerduty_note']);
  });

  it('two ticks at once past the limit give up once (one terminate, one reply)', async () => {
    const { run } = await startedRun();
    sessions.fail('get', 'session_api_unavailable', { times: Number.POSITIVE_INFINITY });
    clock.advance(LIMITS.giveUpAfterMs + 1);
    const [a, b] = await Promise.all([follower.tick(), follower.tick()]);
    expect(a.changed + b.changed).toBe(1);
    expect((await stored(run.id)).state).toBe('abandoned');
    expect(await queuedJobNames(store)).toEqual([
      'terminate_session',
      'sync_message',
      'thread_reply:abandoned',
    ]);
  });

  it('a session Devin no longer has fails the run, with the reason in its thread', async () => {
    const { run, sessionId } = await startedRun();
    sessions.delete(sessionId);
    expect(await follower.tick()).toEqual({ followed: 1, changed: 1 });
    expect(await stored(run.id)).toMatchObject({
      state: 'session_failed',
      error: 'Devin no longer has this session (deleted or archived)',
    });
    expect(await queuedJobNames(store)).toEqual(['sync_message', 'thread_reply:session_failed']);
    expect(await follower.tick()).toEqual({ followed: 0, changed: 0 });
  });

  it('an error Devin reports fails the run', async () => {
    const { run, sessionId } = await startedRun();
    sessions.update(sessionId, { status: 'error' });
    await follower.tick();
    expect(await stored(run.id)).toMatchObject({
      state: 'session_failed',
      error: 'Devin reported an error in the session',
    });
    expect(await queuedJobNames(store)).toEqual(['sync_message', 'thread_reply:session_failed']);
  });

  it('polls that fail are tried again next tick, and past the limit the run is given up', async () => {
    const { run } = await startedRun();
    sessions.fail('get', 'session_api_unavailable', { times: Number.POSITIVE_INFINITY });

    clock.advance(LIMITS.giveUpAfterMs);
    expect(await follower.tick()).toEqual({ followed: 1, changed: 0 });
    expect((await stored(run.id)).state).toBe('started');
    expect(await queuedJobNames(store)).toEqual([]);

    clock.advance(1);
    expect(await follower.tick()).toEqual({ followed: 1, changed: 1 });
    const abandoned = await stored(run.id);
    expect(abandoned.state).toBe('abandoned');
    expect(abandoned.error).toContain('Devin could not be asked about this session for too long');
    expect(abandoned.error).toContain('session_api_unavailable');
    expect(await queuedJobNames(store)).toEqual([
      'terminate_session',
      'sync_message',
      'thread_reply:abandoned',
    ]);
    expect(await follower.tick()).toEqual({ followed: 0, changed: 0 });
  });

  it('one failed poll does not hold up the other runs', async () => {
    const first = await startedRun('Q1');
    clock.advance(1000);
    const second = await startedRun('Q2');
    sessions.fail('get', 'session_api_timeout');
    sessions.update(first.sessionId, { status: 'exit', statusDetail: 'finished' });
    sessions.update(second.sessionId, { status: 'exit', statusDetail: 'finished' });
    expect(await follower.tick()).toEqual({ followed: 2, changed: 1 });
    expect((await stored(second.run.id)).state).toBe('finished');
    expect((await stored(first.run.id)).state).toBe('started');
    await follower.tick();
    expect((await stored(first.run.id)).state).toBe('finished');
  });

  it('an early start is not finished by what it reports before the incident resolves', async () => {
    const { run, sessionId } = await startedRun('Q1', 'early');
    sessions.update(sessionId, { status: 'exit', statusDetail: 'finished' });
    expect(await follower.tick()).toEqual({ followed: 1, changed: 1 });
    expect(await stored(run.id)).toMatchObject({ state: 'started', devinStatus: 'exit' });
    expect(await queuedJobNames(store)).toEqual([]);
  });

  it('a run without a session yet is skipped, not polled', async () => {
    const opened = await lifecycle.open(newRun(anIncident(), 1, 'auto', 'C1'));
    // A session_created step without the session's ID recorded (an old row, a partial write).
    await lifecycle.fire(opened?.id as string, 'session_created');
    await takeJobs(store);
    expect(await follower.tick()).toEqual({ followed: 1, changed: 0 });
    expect(sessions.calls).toEqual([]);
  });
});

describe('SessionFollower: approvals waiting too long', () => {
  async function waitingRun(): Promise<PostmortemRun> {
    const run = await lifecycle.open(newRun(anIncident(), 1, 'approval', 'C1'));
    if (!run) throw new Error('run not opened');
    await takeJobs(store);
    return run;
  }

  it('are reminded once, then expired', async () => {
    const run = await waitingRun();

    clock.advance(REMIND_AFTER_MS - 1);
    expect(await follower.tick()).toEqual({ followed: 0, changed: 0 });
    expect(await queuedJobNames(store)).toEqual([]);

    clock.advance(1);
    expect(await follower.tick()).toEqual({ followed: 0, changed: 1 });
    expect(await stored(run.id)).toMatchObject({ state: 'awaiting_approval', remindedAt: clock.ms });
    expect(await queuedJobNames(store)).toEqual(['thread_reply:reminder']);

    clock.advance(HOUR);
    expect(await follower.tick()).toEqual({ followed: 0, changed: 0 });
    expect(await queuedJobNames(store)).toEqual([]);

    clock.ms = run.createdAt + EXPIRE_AFTER_MS;
    expect(await follower.tick()).toEqual({ followed: 0, changed: 1 });
    expect((await stored(run.id)).state).toBe('expired');
    expect(await queuedJobNames(store)).toEqual(['sync_message']);

    clock.advance(HOUR);
    expect(await follower.tick()).toEqual({ followed: 0, changed: 0 });
    expect(await queuedJobNames(store)).toEqual([]);
  });

  it('two ticks at once remind once', async () => {
    const run = await waitingRun();
    clock.advance(REMIND_AFTER_MS);
    const [a, b] = await Promise.all([follower.tick(), follower.tick()]);
    expect(a.changed + b.changed).toBe(1);
    expect((await stored(run.id)).remindedAt).toBe(clock.ms);
    expect(await queuedJobNames(store)).toEqual(['thread_reply:reminder']);
  });

  it('two ticks at once expire once', async () => {
    const run = await waitingRun();
    clock.advance(EXPIRE_AFTER_MS);
    const [a, b] = await Promise.all([follower.tick(), follower.tick()]);
    expect(a.changed + b.changed).toBe(1);
    expect((await stored(run.id)).state).toBe('expired');
    expect(await queuedJobNames(store)).toEqual(['sync_message']);
  });

  it('an approval first looked at after its expiry is expired without a reminder', async () => {
    const run = await waitingRun();
    clock.advance(EXPIRE_AFTER_MS);
    expect(await follower.tick()).toEqual({ followed: 0, changed: 1 });
    expect(await stored(run.id)).toMatchObject({ state: 'expired', remindedAt: null });
    expect(await queuedJobNames(store)).toEqual(['sync_message']);
  });

  it('a decided run is neither reminded nor expired', async () => {
    const run = await waitingRun();
    await lifecycle.fire(run.id, 'skip', { patch: { decidedBy: 'U1' } });
    await takeJobs(store);
    clock.advance(EXPIRE_AFTER_MS);
    expect(await follower.tick()).toEqual({ followed: 0, changed: 0 });
    expect((await stored(run.id)).state).toBe('skipped');
    expect(await queuedJobNames(store)).toEqual([]);
  });
});
