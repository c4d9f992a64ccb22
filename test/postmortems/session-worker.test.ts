import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RetryableError } from '../../src/errors.js';
import { createLogger } from '../../src/logging.js';
import { DomainError, toJobFailure } from '../../src/postmortems/errors.js';
import { newRun } from '../../src/postmortems/intake.js';
import { Lifecycle } from '../../src/postmortems/lifecycle.js';
import type { PostmortemRun, RunTrigger } from '../../src/postmortems/model.js';
import { PostmortemService } from '../../src/postmortems/service.js';
import { SessionWorker } from '../../src/postmortems/session-worker.js';
import type { SqliteStore } from '../../src/store/sqlite.js';
import type { Job } from '../../src/store/store.js';
import { anIncident } from '../helpers/builders.js';
import { FakeApprovers, FakeEvidence, FakeSessionApi } from '../helpers/fake-ports.js';
import { Clock, closeTempStores, queuedJobNames, takeJobs, tempStore } from '../helpers/temp-store.js';

const MINUTE = 60_000;
const RECONCILE_WINDOW_MS = 5 * MINUTE;
const GIVE_UP_AFTER_MS = 60 * MINUTE;

let clock: Clock;
let store: SqliteStore;
let lifecycle: Lifecycle;
let sessions: FakeSessionApi;
let evidence: FakeEvidence;
let worker: SessionWorker;

beforeEach(() => {
  clock = new Clock();
  store = tempStore(clock);
  lifecycle = new Lifecycle(store);
  sessions = new FakeSessionApi(clock.now);
  evidence = new FakeEvidence();
  worker = new SessionWorker({
    store,
    lifecycle,
    sessions,
    evidence,
    policy: {
      autoStartPriorities: ['P1'],
      earlyStartPriorities: [],
      neverPriorities: [],
      defaultChannel: 'C1',
      routing: { services: {} },
    },
    session: { playbookId: undefined, knowledgeIds: [], repos: [], maxAcuLimit: undefined },
    prompt: { template: undefined, destination: 'docs/postmortems/' },
    logger: createLogger('silent'),
    now: clock.now,
    giveUpAfterMs: GIVE_UP_AFTER_MS,
    reconcileWindowMs: RECONCILE_WINDOW_MS,
  });
});
afterEach(closeTempStores);

/** A run born in `starting`, and the start_session job its birth queued, as the queue hands it out. */
async function startingRun(trigger: RunTrigger = 'auto'): Promise<{ run: PostmortemRun; job: Job }> {
  const run = await lifecycle.open(newRun(anIncident(), 1, trigger, 'C1'));
  if (!run) throw new Error('run not opened');
  const job = (await takeJobs(store)).find((j) => j.kind === 'start_session');
  if (!job) throw new Error('no start_session job queued');
  return { run, job };
}

/** Runs the job as the runner would hand it over on attempt `attempt`; returns what reaches the runner. */
async function attempt(job: Job, attemptNo: number): Promise<unknown> {
  try {
    await worker.startSession(String(job.payload.runId), { ...job, attempts: attemptNo });
    return undefined;
  } catch (err) {
    return toJobFailure(err);
  }
}

const run = async (id: string) => (await store.getRun(id)) as PostmortemRun;

describe('SessionWorker.startSession: creating the session exactly once', () => {
  it('a create that succeeds records the session and moves the run to started', async () => {
    const { run: opened, job } = await startingRun();
    clock.advance(1000);
    expect(await attempt(job, 1)).toBeUndefined();

    expect(sessions.creates).toHaveLength(1);
    const created = [...sessions.sessions.values()][0];
    expect(sessions.creates[0]?.tags).toContain(opened.devinTag);
    expect(sessions.creates[0]?.prompt).toContain('gathering 1: Database down triggered');
    expect(await run(opened.id)).toMatchObject({
      state: 'started',
      devinSessionId: created?.id,
      devinUrl: created?.url,
      devinStatus: 'new',
      sessionStartedAt: clock.ms,
      createAttemptedAt: clock.ms,
      evidence: { timeline: ['gathering 1: Database down triggered'], notes: [] },
    });
    expect(await queuedJobNames(store)).toEqual(['sync_message']);
  });

  it('the same job run again (a crash after the create) creates nothing more', async () => {
    const { run: opened, job } = await startingRun();
    await attempt(job, 1);
    await takeJobs(store);
    const after = await run(opened.id);
    expect(await attempt(job, 2)).toBeUndefined();
    expect(sessions.creates).toHaveLength(1);
    expect(await run(opened.id)).toEqual(after);
    expect(await queuedJobNames(store)).toEqual([]);
  });

  it('a create that timed out is looked up by its tag, patiently, and adopted: never created twice', async () => {
    const { run: opened, job } = await startingRun();
    const intentAt = clock.ms;
    // The session is made, but the answer never comes, and Devin lists it by tag only 2 minutes later.
    sessions.fail('create', 'session_api_timeout', { createdListedAt: intentAt + 2 * MINUTE });

    const first = await attempt(job, 1);
    expect(first).toBeInstanceOf(RetryableError);
    expect(first).toMatchObject({ code: 'session_api_timeout', exact: false });
    expect(await run(opened.id)).toMatchObject({
      state: 'starting',
      createAttemptedAt: intentAt,
      devinSessionId: null,
    });
    // The channel sees the run is waiting, not lost.
    expect(await queuedJobNames(store)).toEqual(['sync_message']);

    clock.advance(MINUTE);
    const second = await attempt(job, 2);
    expect(second).toBeInstanceOf(RetryableError);
    expect(second).toMatchObject({ code: 'create_unconfirmed', exact: true, retryAfterMs: 30_000 });
    expect(sessions.callsOf('findByTag')).toEqual([opened.devinTag]);
    expect(sessions.creates).toHaveLength(1);
    expect(await run(opened.id)).toMatchObject({ state: 'starting', createAttemptedAt: intentAt });
    expect(await queuedJobNames(store)).toEqual([]);

    clock.advance(MINUTE);
    expect(await attempt(job, 3)).toBeUndefined();
    const made = [...sessions.sessions.values()];
    expect(made).toHaveLength(1);
    expect(sessions.creates).toHaveLength(1);
    expect(await run(opened.id)).toMatchObject({ state: 'started', devinSessionId: made[0]?.id });
    expect(await queuedJobNames(store)).toEqual(['sync_message']);
  });

  it('a create that made nothing is tried again once the reconcile window has passed', async () => {
    const { run: opened, job } = await startingRun();
    sessions.fail('create', 'session_api_unavailable');
    expect(await attempt(job, 1)).toMatchObject({ code: 'session_api_unavailable' });
    expect((await run(opened.id)).createAttemptedAt).toBe(clock.ms);

    clock.advance(RECONCILE_WINDOW_MS - 1);
    expect(await attempt(job, 2)).toMatchObject({ code: 'create_unconfirmed' });
    expect(sessions.creates).toHaveLength(1);

    clock.advance(1);
    expect(await attempt(job, 3)).toBeUndefined();
    expect(sessions.creates).toHaveLength(2);
    expect(sessions.callsOf('findByTag')).toEqual([opened.devinTag, opened.devinTag]);
    expect(await run(opened.id)).toMatchObject({ state: 'started', createAttemptedAt: clock.ms });
  });

  it('a create Devin refused fails the start with its reason and clears the intent', async () => {
    const { run: opened, job } = await startingRun();
    sessions.fail('create', 'session_api_rejected');
    expect(await attempt(job, 1)).toBeUndefined();
    expect(await run(opened.id)).toMatchObject({
      state: 'start_failed',
      error: 'Devin: session_api_rejected',
      createAttemptedAt: null,
      devinSessionId: null,
    });
    expect(sessions.sessions.size).toBe(0);
    expect(await queuedJobNames(store)).toEqual(['sync_message']);
  });

  it('a create that never left clears the intent: the next attempt creates without looking up', async () => {
    const { run: opened, job } = await startingRun();
    sessions.fail('create', 'session_api_not_sent');
    const failure = await attempt(job, 1);
    expect(failure).toBeInstanceOf(RetryableError);
    expect(failure).toMatchObject({ code: 'session_api_not_sent', exact: false });
    expect(await run(opened.id)).toMatchObject({ state: 'starting', createAttemptedAt: null });

    clock.advance(1000);
    expect(await attempt(job, 2)).toBeUndefined();
    expect(sessions.callsOf('findByTag')).toEqual([]);
    expect(sessions.creates).toHaveLength(2);
    expect((await run(opened.id)).state).toBe('started');
  });

  it('a rate-limited create waits as long as Devin asked, and tells the channel only once', async () => {
    const { run: opened, job } = await startingRun();
    sessions.fail('create', 'session_api_rate_limited', { times: 2, retryAfterMs: 7000 });
    expect(await attempt(job, 1)).toMatchObject({ code: 'session_api_rate_limited', retryAfterMs: 7000 });
    expect(await queuedJobNames(store)).toEqual(['sync_message']);
    expect(await attempt(job, 2)).toMatchObject({ code: 'session_api_rate_limited' });
    expect(await queuedJobNames(store)).toEqual([]);
    expect((await run(opened.id)).state).toBe('starting');
  });

  it('retryable failures past giveUpAfterMs fail the start, saying Devin was unreachable', async () => {
    const { run: opened, job } = await startingRun();
    sessions.fail('create', 'session_api_not_sent', { times: Number.POSITIVE_INFINITY });
    expect(await attempt(job, 1)).toBeInstanceOf(RetryableError);
    clock.advance(GIVE_UP_AFTER_MS - 1);
    expect(await attempt(job, 2)).toBeInstanceOf(RetryableError);
    expect((await run(opened.id)).state).toBe('starting');
    await takeJobs(store);

    clock.advance(1);
    expect(await attempt(job, 3)).toBeUndefined();
    const failed = await run(opened.id);
    expect(failed.state).toBe('start_failed');
    expect(failed.error).toBe('Devin was unreachable for too long (Devin: session_api_not_sent)');
    expect(await queuedJobNames(store)).toEqual(['sync_message']);
  });

  it('an unexpected error (a bug) fails the start at once, saying so', async () => {
    const { run: opened, job } = await startingRun();
    sessions.create = async () => {
      throw new TypeError('cannot read properties of undefined');
    };
    expect(await attempt(job, 1)).toBeUndefined();
    expect(await run(opened.id)).toMatchObject({
      state: 'start_failed',
      error: 'unexpected error: cannot read properties of undefined',
    });
  });

  it('Stop pressed while the create was in flight: the run stays stopped and its session is terminated', async () => {
    const { run: opened, job } = await startingRun();
    const service = new PostmortemService({
      store,
      lifecycle,
      approvers: new FakeApprovers(['U1']),
      incidents: undefined,
      logger: createLogger('silent'),
      now: clock.now,
    });
    sessions.whileCreating = async () => {
      expect((await service.stop(opened.id, 'U1')).kind).toBe('done');
    };
    expect(await attempt(job, 1)).toBeUndefined();

    const created = [...sessions.sessions.values()][0];
    expect(await run(opened.id)).toMatchObject({
      state: 'stopped',
      stoppedBy: 'U1',
      devinSessionId: created?.id,
    });
    // Stop's own terminate (queued before the session was known) and the worker's.
    const jobs = await takeJobs(store);
    expect(jobs.map((j) => j.kind)).toEqual(['terminate_session', 'sync_message', 'terminate_session']);

    await worker.terminateSession(opened.id);
    expect(sessions.terminated).toEqual([created?.id]);
    expect(sessions.sessions.get(created?.id ?? '')?.status).toBe('exit');
  });

  it('a run no longer starting creates nothing', async () => {
    const { run: opened, job } = await startingRun();
    await lifecycle.fire(opened.id, 'stop', { patch: { stoppedBy: 'U1' } });
    await takeJobs(store);
    expect(await attempt(job, 1)).toBeUndefined();
    expect(sessions.calls).toEqual([]);
    expect((await run(opened.id)).state).toBe('stopped');
    expect(await queuedJobNames(store)).toEqual([]);
  });

  it('a retried start sends the same prompt: evidence is gathered once and kept', async () => {
    const { job } = await startingRun();
    sessions.fail('create', 'session_api_not_sent');
    await attempt(job, 1);
    await attempt(job, 2);
    expect(evidence.gathered).toHaveLength(1);
    expect(sessions.creates[1]?.prompt).toBe(sessions.creates[0]?.prompt);
  });
});

describe('SessionWorker.finalizeSession: an early start told to finish', () => {
  async function earlyStarted(): Promise<{ run: PostmortemRun; sessionId: string }> {
    const { run: opened, job } = await startingRun('early');
    await attempt(job, 1);
    const started = await run(opened.id);
    if (!started.devinSessionId) throw new Error('no session');
    const finalizing = await lifecycle.fire(opened.id, 'finalize', {
      patch: { finalizeRequestedAt: clock.ms, incident: anIncident({ title: 'Database down, resolved' }) },
    });
    expect(finalizing?.state).toBe('started');
    await takeJobs(store);
    return { run: finalizing as PostmortemRun, sessionId: started.devinSessionId };
  }

  it('gathers fresh evidence, sends the finish message and records that Devin has it', async () => {
    const { run: early, sessionId } = await earlyStarted();
    expect(sessions.creates[0]?.prompt).toContain('Do not write or open the');
    clock.advance(MINUTE);
    await worker.finalizeSession(early.id);

    expect(evidence.gathered).toEqual([early.id, early.id]);
    expect(sessions.messages).toHaveLength(1);
    expect(sessions.messages[0]?.sessionId).toBe(sessionId);
    expect(sessions.messages[0]?.message).toContain('The incident is now resolved');
    expect(sessions.messages[0]?.message).toContain('gathering 2: Database down, resolved triggered');
    expect(await run(early.id)).toMatchObject({
      state: 'started',
      finalizeSentAt: clock.ms,
      evidence: { timeline: ['gathering 2: Database down, resolved triggered'] },
    });
    expect(await queuedJobNames(store)).toEqual(['sync_message']);
  });

  it('a message Devin could not take now is retried, and nothing is recorded as sent', async () => {
    const { run: early } = await earlyStarted();
    sessions.fail('sendMessage', 'session_api_unavailable');
    const failure = await worker.finalizeSession(early.id).catch((err: unknown) => toJobFailure(err));
    expect(failure).toBeInstanceOf(RetryableError);
    expect(failure).toMatchObject({ code: 'session_api_unavailable' });
    expect(await run(early.id)).toMatchObject({ state: 'started', finalizeSentAt: null });
    expect(await queuedJobNames(store)).toEqual([]);
  });

  it('a session Devin no longer has fails the run, with the reason in its thread', async () => {
    const { run: early, sessionId } = await earlyStarted();
    sessions.delete(sessionId);
    await worker.finalizeSession(early.id);
    const failed = await run(early.id);
    expect(failed.state).toBe('session_failed');
    expect(failed.error).toBe(
      `Devin did not accept the message to finish the postmortem: Devin has no session ${sessionId}`,
    );
    expect(await queuedJobNames(store)).toEqual(['sync_message', 'thread_reply:session_failed']);
  });

  it('does nothing for a run that is not followed', async () => {
    const { run: early } = await earlyStarted();
    await lifecycle.fire(early.id, 'stop', { patch: { stoppedBy: 'U1' } });
    await takeJobs(store);
    await worker.finalizeSession(early.id);
    expect(sessions.messages).toEqual([]);
    expect(await queuedJobNames(store)).toEqual([]);
  });
});

describe('SessionWorker.terminateSession', () => {
  it('terminates the run’s session', async () => {
    const { run: opened, job } = await startingRun();
    await attempt(job, 1);
    const sessionId = (await run(opened.id)).devinSessionId;
    await worker.terminateSession(opened.id);
    expect(sessions.terminated).toEqual([sessionId]);
  });

  it('finds by tag a session whose create never answered, and terminates it', async () => {
    const { run: opened, job } = await startingRun();
    sessions.fail('create', 'session_api_connection_lost', { createdListedAt: clock.ms });
    await attempt(job, 1);
    await lifecycle.fire(opened.id, 'stop', { patch: { stoppedBy: 'U1' } });
    await worker.terminateSession(opened.id);
    const made = [...sessions.sessions.keys()];
    expect(made).toHaveLength(1);
    expect(sessions.callsOf('findByTag')).toEqual([opened.devinTag]);
    expect(sessions.terminated).toEqual(made);
  });

  it('calls nothing for a run that never tried to create a session', async () => {
    const { run: opened } = await startingRun();
    await lifecycle.fire(opened.id, 'stop', { patch: { stoppedBy: 'U1' } });
    await worker.terminateSession(opened.id);
    expect(sessions.calls).toEqual([]);
  });

  it('a session already gone counts as terminated; Devin unavailable is retried', async () => {
    const { run: opened, job } = await startingRun();
    await attempt(job, 1);
    const sessionId = (await run(opened.id)).devinSessionId as string;
    sessions.fail('terminate', 'session_api_unavailable');
    const failure = await worker.terminateSession(opened.id).catch((err: unknown) => toJobFailure(err));
    expect(failure).toBeInstanceOf(RetryableError);
    sessions.delete(sessionId);
    await worker.terminateSession(opened.id);
    expect(sessions.terminated).toEqual([sessionId]);
  });

  it('a terminate Devin refuses is a permanent failure for the runner', async () => {
    const { run: opened, job } = await startingRun();
    await attempt(job, 1);
    sessions.fail('terminate', 'session_api_rejected');
    const failure = await worker.terminateSession(opened.id).catch((err: unknown) => toJobFailure(err));
    expect(failure).toBeInstanceOf(DomainError);
    expect(failure).not.toBeInstanceOf(RetryableError);
  });
});
